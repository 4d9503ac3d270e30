"""Credentials in URLs are never shown (issue 19, point 6).

A project's `source.url` may carry them (`https://user:token@host/repo.git`): the
server needs them to fetch, but every read of it — `GET /v1/projects`, the
`/projects` page, a run's `repo`, the server's log — shows `https://***@host/…`
instead. `RedactingFormatter` does it for every line the server logs, tracebacks
included, whichever logger wrote it.
"""

from __future__ import annotations

import copy
import importlib
import logging
import re
from typing import Any

# scheme://userinfo@ — userinfo stops at the first '/', '?', '#', '@' or blank.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@\s]+@")
MASK = "***"


def redact_url(url: str | None) -> str | None:
    """`url` with its credentials, if any, replaced by `***`."""
    if url is None or "@" not in url:
        return url
    return _USERINFO.sub(rf"\g<scheme>{MASK}@", url)


def redact_text(text: str) -> str:
    """Every URL in `text` without its credentials."""
    return redact_url(text) or ""


class RedactingFormatter(logging.Formatter):
    """Wraps a handler's formatter: what it writes has no credentials in URLs."""

    def __init__(self, inner: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(self.inner.format(record))


def redact_logs(*names: str) -> None:
    """Redact what the handlers of the root logger and of the loggers `names` write
    (uvicorn's have handlers of their own); the root gets a stderr handler if it has
    none, so Otto's own warnings go through a redacting formatter too."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    for logger in (root, *(logging.getLogger(n) for n in names)):
        for handler in logger.handlers:
            if not isinstance(handler.formatter, RedactingFormatter):
                handler.setFormatter(RedactingFormatter(handler.formatter))


def formatter(inner: str, **kwargs: Any) -> RedactingFormatter:
    """A `logging.config` factory: the formatter class `inner` (dotted path), redacting."""
    module, _, name = inner.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return RedactingFormatter(cls(**kwargs))


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration with every formatter redacting."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    for spec in config["formatters"].values():
        spec["inner"] = spec.pop("()")
        spec["()"] = f"{__name__}.formatter"
    return config
