"""The shared backend: PostgreSQL through psycopg 3, for several server replicas.

The writer thread group-commits like the SQLite one. Sequence numbers come
from a counter row that the transaction holds locked until it commits, so
they are gap-free and ordered as the commits are, across replicas too.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row, tuple_row

from otto.psm.store.base import Row, Store, WriterTx
from otto.psm.store.schema import MIGRATIONS

T = TypeVar("T")
MIGRATION_LOCK = 0x0770  # advisory lock id: one replica migrates at a time
CHANNEL = "otto_transitions"


@cache
def _pg(sql: str) -> str:
    """Our SQL uses `?` placeholders; psycopg wants `%s`."""
    return re.sub(r"\?", "%s", sql.replace("%", "%%"))


def _connect(dsn: str) -> psycopg.Connection[Row]:
    return psycopg.connect(dsn, autocommit=True, row_factory=dict_row)


class _PostgresTx(WriterTx):
    dialect = "postgres"

    def __init__(self, conn: psycopg.Connection[Row]) -> None:
        super().__init__()
        self.conn = conn

    def one(self, sql: str, *params: Any) -> Row | None:
        try:
            return self.conn.execute(_pg(sql), params).fetchone()
        except psycopg.Error:
            self.dirty = True  # a failed statement may have spoiled the transaction
            raise

    def all(self, sql: str, *params: Any) -> list[Row]:
        try:
            return self.conn.execute(_pg(sql), params).fetchall()
        except psycopg.Error:
            self.dirty = True
            raise

    def tuples(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        try:
            with self.conn.cursor(row_factory=tuple_row) as cursor:
                return cursor.execute(_pg(sql), params).fetchall()
        except psycopg.Error:
            self.dirty = True
            raise

    def run(self, sql: str, *params: Any) -> int:
        self.dirty = True
        return self.conn.execute(_pg(sql), params).rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.dirty = True
        with self.conn.cursor() as cur:
            cur.executemany(_pg(sql), rows)

    def _begin(self) -> int:
        self.conn.execute("BEGIN")
        # The counter row stays locked until COMMIT: replicas number their commits in turn.
        row = self.one("SELECT value FROM seq_counter FOR UPDATE")
        assert row is not None
        return int(row["value"])

    def _commit(self, last_seq: int) -> None:
        if last_seq > self._base_seq:
            # Other replicas learn of new transitions when this commits (NOTIFY is
            # transactional), from the newest sequence number alone.
            self.one(
                "WITH c AS (UPDATE seq_counter SET value = ?) SELECT pg_notify(?, ?)",
                last_seq,
                CHANNEL,
                str(last_seq),
            )
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")


class PostgresStore(Store):
    dialect = "postgres"

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn = dsn
        self._write_conn = _connect(dsn)
        self._migrate()
        self._readers: queue.SimpleQueue[psycopg.Connection[Row]] = queue.SimpleQueue()
        self._all_readers: list[psycopg.Connection[Row]] = []
        self._listener: psycopg.Connection[Any] | None = None
        self._start_writer()

    def _migrate(self) -> None:
        conn = self._write_conn
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) AS v FROM schema_version").fetchone()
            current = (row or {}).get("v") or 0
            for version, statements in enumerate(MIGRATIONS, 1):
                if version <= current:
                    continue
                for sql in statements:
                    conn.execute(sql.replace("{seq}", "seq BIGINT PRIMARY KEY"))  # type: ignore[arg-type]
                if version == 1:
                    conn.execute("CREATE TABLE seq_counter (value BIGINT NOT NULL)")
                    conn.execute("INSERT INTO seq_counter VALUES (0)")
                conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

    def _writer_tx(self) -> WriterTx:
        return _PostgresTx(self._write_conn)

    def read(self, fn: Callable[[Any], T]) -> T:
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = _connect(self.dsn)
            self._all_readers.append(conn)
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                return fn(_PostgresTx(conn))
        finally:
            self._readers.put(conn)

    def listen(self, on_seq: Callable[[int], None]) -> None:
        """Call `on_seq(newest)` whenever any replica commits transitions."""
        conn = psycopg.connect(self.dsn, autocommit=True)
        conn.execute(f"LISTEN {CHANNEL}")
        self._listener = conn

        def loop() -> None:
            try:
                for note in conn.notifies():
                    on_seq(int(note.payload))
            except psycopg.Error:
                return  # closed

        threading.Thread(target=loop, name="psm-listen", daemon=True).start()

    def _close_connections(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self._write_conn.close()
        for conn in self._all_readers:
            conn.close()
