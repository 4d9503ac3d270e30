"""The storage interface the PSM runs on, and the group-committing writer both backends share.

Every change runs as a function of one `Tx` on the single writer thread.
The writer takes whatever work is queued, runs each piece inside its own
SAVEPOINT (so one refused request rolls back alone) and commits them all in
one database transaction: one fsync for many transitions. A caller's
`write()` returns only after its work is durable; the transitions it
produced are then published, in sequence order, to `on_commit`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from otto.diskspace import trouble

T = TypeVar("T")
Row = Mapping[str, Any]  # a dict, or sqlite3.Row: columns by name

GROUP_LIMIT = 256  # pieces of work per database transaction at most


class Tx(Protocol):
    """A database transaction as the PSM sees it (SQL uses `?` placeholders)."""

    dialect: str  # "sqlite" or "postgres"

    def one(self, sql: str, *params: Any) -> Row | None: ...
    def all(self, sql: str, *params: Any) -> list[Row]: ...
    def tuples(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Like `all`, each row a plain tuple: cheaper where many rows are read."""
        ...

    def run(self, sql: str, *params: Any) -> int: ...
    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def next_seq(self) -> int: ...


class _Work:
    """One caller's piece of work; a bare lock is the cheapest way to wait for it."""

    __slots__ = ("_done", "error", "fn", "result")

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self._done = threading.Lock()
        self._done.acquire()

    def finish(self, result: Any, error: BaseException | None) -> None:
        self.result, self.error = result, error
        self._done.release()

    def wait(self) -> Any:
        self._done.acquire()
        if self.error is not None:
            raise self.error
        return self.result


class Store(ABC):
    """A backend: a single writer thread with group commit, plus concurrent readers."""

    dialect: str

    def __init__(self) -> None:
        self.on_commit: Callable[[list[Any]], None] = lambda published: None
        # Told of every group commit: None when it committed, else what failed it (a full
        # disk, an unreachable database: `otto.diskspace.SpaceWatch.note` listens).
        self.on_outcome: Callable[[BaseException | None], object] = lambda error: None
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._closed = False
        self._closing = threading.Lock()  # no work is queued behind the stop sentinel
        self._named: dict[str, threading.Lock] = {}  # `exclusive`'s locks
        self._names_lock = threading.Lock()

    # -- the interface -------------------------------------------------------
    def write(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(tx)` in the next group commit; return its result once durable."""
        return self._submit([fn])[0].wait()

    def write_each(self, fns: Sequence[Callable[[Any], T]]) -> list[T | Exception]:
        """Like `write` for each of `fns`, queued together so that they share a commit:
        each runs and fails alone, its exception given in place of its result."""
        outcomes: list[T | Exception] = []
        for work in self._submit(fns):
            try:
                outcomes.append(work.wait())
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    def _submit(self, fns: Sequence[Callable[[Any], Any]]) -> list[_Work]:
        works = [_Work(fn) for fn in fns]
        with self._closing:
            if self._closed:
                raise RuntimeError("store is closed")
            for work in works:
                self._queue.put(work)
        return works

    @abstractmethod
    def read(self, fn: Callable[[Any], T]) -> T:
        """Run `fn(tx)` on a read-only snapshot, concurrently with the writer."""

    def listen(self, on_seq: Callable[[int], None]) -> None:  # noqa: B027 - optional hook
        """Call `on_seq(newest)` when another process commits transitions (none by default)."""

    @contextlib.contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """Whether this process now holds the lock `name`, until the block ends (False:
        someone else does; the caller skips the work). For work that replicas must not
        do at once, like a repository's pushes. One process has the database to itself
        (SQLite): a lock of this process is enough; PostgreSQL's holds across replicas."""
        with self._names_lock:
            lock = self._named.setdefault(name, threading.Lock())
        held = lock.acquire(blocking=False)
        try:
            yield held
        finally:
            if held:
                lock.release()

    def close(self) -> None:
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)
        if self._writer:
            self._writer.join()
        self._close_connections()

    # -- for the backends ----------------------------------------------------
    def _start_writer(self) -> None:
        self._writer = threading.Thread(target=self._write_loop, name="psm-writer", daemon=True)
        self._writer.start()

    @abstractmethod
    def _writer_tx(self) -> WriterTx: ...

    @abstractmethod
    def _close_connections(self) -> None: ...

    def _write_loop(self) -> None:
        tx = self._writer_tx()
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < GROUP_LIMIT:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # stop after this group
                    break
                group.append(more)
            self._commit_group(tx, group)

    def _commit_group(self, tx: WriterTx, group: list[_Work]) -> None:
        try:
            outcomes = self._run_group(tx, group, savepoints=False)
        except _Redo as redo:
            # A piece of work failed after it had written: run the group again,
            # this time fencing each piece off in its own savepoint.
            try:
                tx.rollback()
            except BaseException:  # the connection itself failed: the group with it
                self._fail_group(tx, group, redo.__cause__ or redo)
                return
            tx.published.clear()
            outcomes = None
        except BaseException as exc:
            self._fail_group(tx, group, exc)
            return
        if outcomes is None:
            try:
                outcomes = self._run_group(tx, group, savepoints=True)
            except BaseException as exc:
                self._fail_group(tx, group, exc)
                return
        # A piece refused for lack of space (a savepoint's write) fails alone: still news.
        self._told(next((e for _, _, e in outcomes if e is not None and trouble(e)), None))
        published, tx.published = tx.published, []
        if published:
            try:
                self.on_commit(published)
            except Exception:  # committed all the same: the writer and its callers go on
                logging.getLogger(__name__).exception("on_commit failed")
        for work, result, error in outcomes:
            work.finish(result, error)

    @staticmethod
    def _run_group(tx: WriterTx, group: list[_Work], savepoints: bool) -> list[_Outcome]:
        """Run each piece of work in one transaction and commit it.

        Without savepoints (the fast path) a piece that fails before writing
        anything is simply dropped; one that fails after writing raises _Redo.
        """
        outcomes: list[_Outcome] = []
        tx.begin()
        for work in group:
            if savepoints:
                tx.savepoint()
            tx.dirty = False
            mark = len(tx.published)
            try:
                result = work.fn(tx)
            except BaseException as exc:  # the caller gets it; the group goes on
                if savepoints:
                    tx.rollback_savepoint()
                elif tx.dirty:
                    raise _Redo from exc
                del tx.published[mark:]
                outcomes.append((work, None, exc))
            else:
                if savepoints:
                    tx.release_savepoint()
                outcomes.append((work, result, None))
        tx.commit()
        return outcomes

    def _fail_group(self, tx: WriterTx, group: list[_Work], exc: BaseException) -> None:
        with contextlib.suppress(Exception):  # as unwell as the commit: callers must hear
            tx.rollback()
        tx.published.clear()
        tx.recover()
        self._told(exc)
        for work in group:
            work.finish(None, exc)

    def _told(self, error: BaseException | None) -> None:
        try:
            self.on_outcome(error)
        except Exception:
            logging.getLogger(__name__).exception("on_outcome failed")


class _Redo(Exception):
    pass


_Outcome = tuple[_Work, Any, BaseException | None]


class WriterTx(ABC):
    """The writer thread's transaction: `Tx` plus transaction control.

    Sequence numbers: the transaction reads the last committed one when it
    begins (holding the write lock from then on) and numbers its transitions
    on from there; a rolled-back piece of work drops its transitions from
    `published`, so the numbering stays gap-free without a query per number.
    """

    def __init__(self) -> None:
        self.published: list[Any] = []  # what this transaction will publish when committed
        self.dirty = False  # set by anything that may have changed the transaction
        self._base_seq = 0

    def next_seq(self) -> int:
        return self._base_seq + len(self.published) + 1

    def begin(self) -> None:
        self._base_seq = self._begin()

    def commit(self) -> None:
        self._commit(self._base_seq + len(self.published))

    @abstractmethod
    def _begin(self) -> int:
        """Start the transaction, take the write lock, return the last committed seq."""

    @abstractmethod
    def _commit(self, last_seq: int) -> None: ...

    @abstractmethod
    def rollback(self) -> None: ...

    def recover(self) -> None:  # noqa: B027 - optional hook
        """After a failed group: mend the connection if it broke (none to mend by default)."""

    def savepoint(self) -> None:
        self.run("SAVEPOINT work")

    def release_savepoint(self) -> None:
        self.run("RELEASE SAVEPOINT work")

    def rollback_savepoint(self) -> None:
        self.run("ROLLBACK TO SAVEPOINT work")
        self.run("RELEASE SAVEPOINT work")

    @abstractmethod
    def run(self, sql: str, *params: Any) -> int: ...
