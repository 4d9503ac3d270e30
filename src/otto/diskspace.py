"""Storage trouble with its name: a full disk or an unreachable store is told
apart from every other failure, answered as such (a JSON 507 or 503, a context ending
`Error` with reason `disk_full` or `store_unavailable`) and logged once per episode.

`trouble(exc)` names what went wrong, whichever layer raised it: an `OSError` ENOSPC or
EDQUOT, SQLite's "database or disk is full", PostgreSQL's SQLSTATE 53100, the object
store's `StoreFull`/`StoreUnavailable`. `SpaceWatch` remembers the current episode: the
first failure is logged, later ones are not, and it ends at the next successful write or
once `statvfs` shows free space again on every watched path (`GET /health` asks).
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

DISK_FULL = "disk_full"
STORE_UNAVAILABLE = "store_unavailable"
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13  # "database or disk is full"
# Free bytes every watched filesystem needs before an episode counts as over without a
# successful write: a little more than a log chunk or a group commit takes.
RECOVERED_FREE = 1 << 20
# A failure this recent is believed over statvfs: space may be reclaimed and spent again.
SETTLE_SECONDS = 1.0

log = logging.getLogger("otto.disk")


def trouble(exc: BaseException | None) -> str | None:
    """`disk_full`, `store_unavailable`, or None for any other error (its causes too)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        kind = _kind(exc)
        if kind is not None:
            return kind
        exc = exc.__cause__ or exc.__context__
    return None


def _kind(exc: BaseException) -> str | None:
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return DISK_FULL
    if isinstance(exc, sqlite3.OperationalError):
        full = getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL
        return DISK_FULL if full or "disk is full" in str(exc) else None
    code = getattr(exc, "code", None)  # the object store's errors (otto.objectstore.errors)
    if code == DISK_FULL:
        return DISK_FULL
    if code == "unavailable":
        return STORE_UNAVAILABLE
    sqlstate = getattr(exc, "sqlstate", None)  # psycopg, not imported: it is optional
    if sqlstate == "53100":
        return DISK_FULL
    module = type(exc).__module__ or ""
    operational = any(cls.__name__ == "OperationalError" for cls in type(exc).__mro__)
    if module.startswith("psycopg") and (operational or str(sqlstate or "").startswith("08")):
        return STORE_UNAVAILABLE
    return None


def describe(kind: str, exc: BaseException) -> str:
    """The message an API answer and a context's reason carry."""
    what = "the server's disk is full" if kind == DISK_FULL else "the store is unreachable"
    return f"{what}: {exc}"


def free_bytes(path: Path) -> int | None:
    """Free bytes (for an unprivileged writer) on `path`'s filesystem; None if unknown."""
    for candidate in (path, *path.parents):
        try:
            st = os.statvfs(candidate)
        except OSError:
            continue
        return st.f_bavail * st.f_frsize
    return None


class SpaceWatch:
    """The server's current storage episode, if any: logged once, shown by `/health`."""

    def __init__(self, paths: Iterable[Path] = ()) -> None:
        self.paths = [Path(p) for p in paths]
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._since = 0.0

    def note(self, exc: BaseException | None, where: str = "write") -> str | None:
        """A write's outcome: a storage failure starts an episode (logged once), a success
        (None) ends it; other errors say nothing of storage. Returns the failure's kind."""
        kind = trouble(exc) if exc is not None else None
        if kind is None:
            if exc is None and self._reason is not None:
                self._clear("a write succeeded")
            return None
        assert exc is not None
        self.failed(kind, f"{where}: {exc}")
        return kind

    def failed(self, kind: str, detail: str) -> None:
        with self._lock:
            self._since = time.monotonic()
            if self._reason is not None:
                return
            self._reason = f"{kind}: {detail}"
        log.error("%s: %s (logged once per episode)", kind, detail)

    def reason(self) -> str | None:
        """The episode's reason, or None once space is back on every watched path."""
        reason = self._reason
        if reason is None or not reason.startswith(DISK_FULL) or not self.paths:
            return reason
        if time.monotonic() - self._since < SETTLE_SECONDS:
            return reason
        free = [free_bytes(p) for p in self.paths]
        if all(f is not None and f >= RECOVERED_FREE for f in free):
            self._clear("space is free again")
            return None
        return reason

    def _clear(self, why: str) -> None:
        with self._lock:
            reason, self._reason = self._reason, None
        if reason is not None:
            log.warning("storage recovered (%s) after %s", why, reason)

    def filter(self, record: logging.LogRecord) -> bool:
        """A logging filter: a traceback of storage trouble becomes the episode's one line."""
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or trouble(exc) is None:
            return True
        self.note(exc, record.getMessage())
        return False
