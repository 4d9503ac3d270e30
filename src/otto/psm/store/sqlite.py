"""The embedded backend: one SQLite file in WAL mode, one writer thread, many readers."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from otto.psm.store.base import Row, Store, WriterTx
from otto.psm.store.schema import MIGRATIONS

T = TypeVar("T")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.row_factory = sqlite3.Row  # C-fast, read by column name like a dict
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # a committed transition survives power loss
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


class _SqliteTx(WriterTx):
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__()
        self.conn = conn

    def one(self, sql: str, *params: Any) -> Row | None:
        try:
            return self.conn.execute(sql, params).fetchone()
        except sqlite3.Error:
            self.dirty = True  # a failed statement may have spoiled the transaction
            raise

    def all(self, sql: str, *params: Any) -> list[Row]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error:
            self.dirty = True
            raise

    def tuples(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        cursor = self.conn.cursor()
        cursor.row_factory = None
        try:
            return cursor.execute(sql, params).fetchall()
        except sqlite3.Error:
            self.dirty = True
            raise

    def run(self, sql: str, *params: Any) -> int:
        self.dirty = True
        return self.conn.execute(sql, params).rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.dirty = True
        self.conn.executemany(sql, rows)

    def _begin(self) -> int:
        self.conn.execute("BEGIN IMMEDIATE")  # the write lock, until COMMIT
        row = self.one("SELECT COALESCE(MAX(seq), 0) AS seq FROM transitions")
        assert row is not None
        return int(row["seq"])

    def _commit(self, last_seq: int) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


class SqliteStore(Store):
    dialect = "sqlite"

    def __init__(self, path: Path | str) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_conn = _connect(self.path)
        self._migrate()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._start_writer()

    def _migrate(self) -> None:
        conn = self._write_conn
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT MAX(version) AS v FROM schema_version").fetchone()
        current = row["v"] or 0
        for version, statements in enumerate(MIGRATIONS, 1):
            if version <= current:
                continue
            conn.execute("BEGIN IMMEDIATE")
            for sql in statements:
                conn.execute(sql.replace("{seq}", "seq INTEGER PRIMARY KEY"))
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            conn.execute("COMMIT")

    def _writer_tx(self) -> WriterTx:
        return _SqliteTx(self._write_conn)

    def read(self, fn: Callable[[Any], T]) -> T:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        tx = _SqliteTx(conn)
        conn.execute("BEGIN")
        try:
            return fn(tx)
        finally:
            conn.execute("COMMIT")

    def _close_connections(self) -> None:
        self._write_conn.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
