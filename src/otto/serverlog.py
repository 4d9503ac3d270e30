"""The server's log on stderr: one line per thing it does, readable or JSON.

Code logs with the standard `logging` module and passes what a machine would
want as fields: `log.info("run created", extra=fields(uuid=…, project=…))`.
`--log-format text` (the default) writes

    2026-01-02 12:00:00 INFO  otto.psm: run created uuid=… source=webhook:app ref=refs/heads/main

(a list field follows on lines of its own, indented); `--log-format json` writes one
JSON object per line: `time` (UTC, ISO 8601), `level`, `logger`, `message`, the
fields, and `exception` (the traceback) when there is one. `--log-level` (debug, info,
warning, error) chooses what is written. Credentials in URLs are masked either way
(`otto.redact`).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

from otto.redact import RedactingFormatter

LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
FIELDS = "otto_fields"
QUIET_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore")


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call: the fields that are not None."""
    return {FIELDS: {k: v for k, v in values.items() if v is not None}}


def _fields_of(record: logging.LogRecord) -> dict[str, Any]:
    found = getattr(record, FIELDS, None)
    return found if isinstance(found, dict) else {}


class TextFormatter(logging.Formatter):
    """`TIME LEVEL logger: message key=value …`, for people."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M:%S")
        line = f"{stamp} {record.levelname:<5} {record.name}: {record.getMessage()}"
        below: list[str] = []
        for key, value in _fields_of(record).items():
            if isinstance(value, list | tuple):
                below += [f"    {item}" for item in value]
            else:
                line += f" {key}={_shown(value)}"
        if record.exc_info:
            below.append(self.formatException(record.exc_info))
        return "\n".join([line, *below])


def _shown(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c in text for c in ' "=\n') else text


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for machines."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields_of(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: LogLevel = "info", form: LogFormat = "text") -> logging.Handler:
    """Send every logger's records to stderr as `form`, from `level` up (libraries' own
    chatter from warning up); returns the handler."""
    handler = logging.StreamHandler(sys.stderr)
    inner = JsonFormatter() if form == "json" else TextFormatter()
    handler.setFormatter(RedactingFormatter(inner))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        quiet = logging.getLogger(name)
        quiet.handlers.clear()
        quiet.propagate = True
        quiet.setLevel(max(logging.WARNING, root.level))
    return handler
