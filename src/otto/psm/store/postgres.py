"""The shared backend: PostgreSQL through psycopg 3, for several server replicas.

The writer thread group-commits like the SQLite one. Sequence numbers come
from a counter row that the transaction holds locked until it commits, so
they are gap-free and ordered as the commits are, across replicas too.

A lost connection (the database restarted, the session was terminated) fails the work
in flight (its callers hear it) and is made again: the writer's for the next group, a
reader's for the same read, the listener's at once (catching up on what it missed). A
replica that stalls inside a transaction (stopped, or cut off) would hold the counter
row, and so every replica's writes: the database ends such a session after
`STALLED_WRITER` seconds idle in it, and the replica's writer reconnects when it resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row, tuple_row

from otto.psm.store.base import Row, Store, WriterTx
from otto.psm.store.schema import MIGRATIONS

T = TypeVar("T")
MIGRATION_LOCK = 0x0770  # advisory lock id: one replica migrates at a time
CHANNEL = "otto_transitions"
STALLED_WRITER = 10  # seconds a writer's transaction may sit idle before it is ended
RECONNECT_PAUSE = 0.5  # seconds between attempts to listen again
LISTEN_JOIN = 10.0  # seconds `close()` waits for a listener thread to end


@cache
def _pg(sql: str) -> str:
    """Our SQL uses `?` placeholders; psycopg wants `%s`."""
    return re.sub(r"\?", "%s", sql.replace("%", "%%"))


def _connect(dsn: str) -> psycopg.Connection[Row]:
    # Named by process: an operator (or a test) can tell each replica's sessions apart.
    name = f"otto {os.getpid()}"
    return psycopg.connect(dsn, autocommit=True, row_factory=dict_row, application_name=name)


def _connect_writer(dsn: str) -> psycopg.Connection[Row]:
    conn = _connect(dsn)
    conn.execute(f"SET idle_in_transaction_session_timeout = '{STALLED_WRITER}s'")
    return conn


def _lost(conn: psycopg.Connection[Any]) -> bool:
    return bool(conn.closed or conn.broken)


class _PostgresTx(WriterTx):
    dialect = "postgres"

    def __init__(self, conn: psycopg.Connection[Row], dsn: str | None = None) -> None:
        super().__init__()
        self.conn = conn
        self.dsn = dsn  # to connect again with (the writer's)

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

    def recover(self) -> None:
        if self.dsn is None or not _lost(self.conn):
            return
        with contextlib.suppress(psycopg.Error):  # still unreachable: the next group retries
            self.conn = _connect_writer(self.dsn)


class PostgresStore(Store):
    dialect = "postgres"

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn = dsn
        self._write_conn = _connect_writer(dsn)
        self._migrate()
        self._tx = _PostgresTx(self._write_conn, dsn)
        self._readers: queue.SimpleQueue[psycopg.Connection[Row]] = queue.SimpleQueue()
        self._all_readers: list[psycopg.Connection[Row]] = []
        self._listener: psycopg.Connection[Any] | None = None  # the newest
        self._listening_on: list[psycopg.Connection[Any]] = []  # every one still open
        self._listen_threads: list[threading.Thread] = []
        self._listen_lock = threading.Lock()
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
        return self._tx

    def read(self, fn: Callable[[Any], T]) -> T:
        try:
            return self._read(fn)
        except psycopg.OperationalError:
            # A reader's session was lost, and likely its idle siblings with it (the
            # database restarted): drop them all, read once more on a new one.
            self._drop_idle_readers()
            return self._read(fn)

    def _drop_idle_readers(self) -> None:
        while True:
            try:
                conn = self._readers.get_nowait()
            except queue.Empty:
                return
            self._all_readers.remove(conn)
            conn.close()

    def _read(self, fn: Callable[[Any], T]) -> T:
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
            if _lost(conn):
                self._all_readers.remove(conn)
                conn.close()
            else:
                self._readers.put(conn)

    def listen(self, on_seq: Callable[[int], None]) -> None:
        """Call `on_seq(newest)` whenever any replica commits transitions (and, once a
        lost connection is made again, with the newest seq: what it missed meanwhile)."""
        self._listener = conn = self._listening()
        thread = threading.Thread(target=self._listen_loop, args=(conn, on_seq), name="psm-listen")
        thread.daemon = True
        self._listen_threads.append(thread)
        thread.start()

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """`Store.exclusive` across replicas: a session-level advisory lock, on a connection
        of its own (a replica that dies lets go with its connection)."""
        with super().exclusive(name) as here:
            if not here:
                yield False
                return
            key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")
            with _connect(self.dsn) as conn:
                row = conn.execute("SELECT pg_try_advisory_lock(%s) AS held", (key - (1 << 63),))
                held = bool((row.fetchone() or {}).get("held"))
                yield held  # the lock goes with the connection

    def _listening(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.dsn, autocommit=True, application_name=f"otto {os.getpid()}")
        conn.execute(f"LISTEN {CHANNEL}")
        with self._listen_lock:
            self._listening_on = [c for c in self._listening_on if not c.closed] + [conn]
        return conn

    def _listen_loop(
        self, conn: psycopg.Connection[Any] | None, on_seq: Callable[[int], None]
    ) -> None:
        while conn is not None and not self._closed:
            with contextlib.suppress(psycopg.Error):  # lost (or closed: the loop ends)
                for note in conn.notifies():
                    on_seq(int(note.payload))
            conn = self._listen_again(on_seq)
        if conn is not None:  # made again while the store closed
            conn.close()

    def _listen_again(self, on_seq: Callable[[int], None]) -> psycopg.Connection[Any] | None:
        while not self._closed:
            time.sleep(RECONNECT_PAUSE)
            try:
                conn = self._listening()
                row = conn.execute("SELECT value FROM seq_counter").fetchone()
            except psycopg.Error:
                continue
            self._listener = conn
            on_seq(int(row[0]) if row else 0)
            return conn
        return None

    def _close_connections(self) -> None:
        # The listeners first, and their threads let finish: `on_seq` may be reading.
        with self._listen_lock:
            listening = list(self._listening_on)
        for conn in listening:
            conn.close()
        for thread in self._listen_threads:
            if thread is not threading.current_thread():
                thread.join(LISTEN_JOIN)
        self._tx.conn.close()
        for conn in self._all_readers:
            conn.close()
