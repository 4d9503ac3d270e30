"""Credentials in URLs are never shown (README, "Limits").

A project's `source.url` may carry them (`https://user:token@host/repo.git`): the
server needs them to fetch, but every read of it — `GET /v1/projects`, the
`/projects` page, a run's `repo`, the server's log — shows `https://***@host/…`
instead. `RedactingFormatter` does it for every line the server logs, tracebacks
included, whichever logger wrote it (`otto.serverlog` installs it).
"""

from __future__ import annotations

import logging
import re

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
