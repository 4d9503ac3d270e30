"""Committed transitions, fanned out to subscribers in sequence order.

The writer publishes each group commit here. Recent transitions stay in a
bounded ring; a subscriber reads from its own cursor, from the ring while it
keeps up and from the store's log when it has fallen behind the ring, so a
slow subscriber costs the state machine nothing and never misses a thing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from otto.psm.records import Transition
from otto.psm.states import Entity
from otto.psm.store.base import Store, Tx

log = logging.getLogger(__name__)

RING = 20_000
PAGE = 1_000
ENTITIES = frozenset(e.value for e in Entity)


@dataclass(frozen=True)
class EventFilter:
    """What a subscriber shows: one pipeline's transitions and/or some entities' (None:
    all of them)."""

    pipeline: str | None = None
    entities: frozenset[str] | None = None

    @classmethod
    def of(cls, pipeline: str | None, entities: Iterable[str] | None) -> EventFilter:
        return cls(pipeline, None if entities is None else frozenset(entities))

    def matches(self, transition: Transition) -> bool:
        return (self.pipeline is None or transition.pipeline == self.pipeline) and (
            self.entities is None or transition.entity in self.entities
        )


EVERYTHING = EventFilter()


def sse_frame(transition: Transition, data: bytes) -> bytes:
    """A transition as a server-sent event, its seq the event's id."""
    return b"id: %d\nevent: transition\ndata: %s\n\n" % (transition.seq, data)


class EventHub:
    def __init__(self, store: Store, capacity: int = RING) -> None:
        self._store = store
        self._capacity = capacity
        # The ring: recent transitions, contiguous by seq (the log is gap-free), each
        # with its JSON encoded once for every subscriber.
        self._ring: list[tuple[Transition, bytes]] = []
        self._cond = threading.Condition()
        # One wake-up per event loop per commit, shared by all its waiting subscribers.
        self._loops: dict[asyncio.AbstractEventLoop, asyncio.Event] = {}
        self._listeners: list[Callable[[list[Transition]], None]] = []
        row = store.read(lambda tx: tx.one("SELECT COALESCE(MAX(seq), 0) AS seq FROM transitions"))
        self.last_seq: int = int(row["seq"]) if row else 0
        store.listen(self.catch_up)

    def subscribe(self, listener: Callable[[list[Transition]], None]) -> None:
        """Call `listener` with every transition committed from now on, in order, in the
        thread that publishes them (no thread to wake per commit). It must be quick and
        must not block: the next commit's subscribers wait for it."""
        with self._cond:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[list[Transition]], None]) -> None:
        with self._cond:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def catch_up(self, newest: int) -> None:
        """Another replica committed up to `newest`: read what this one has not seen."""
        with self._cond:
            if newest > self.last_seq:
                self._extend(self._missing(newest))

    def publish(self, transitions: list[Transition]) -> None:
        """This process committed `transitions` (consecutive, in order)."""
        with self._cond:
            if transitions[-1].seq <= self.last_seq:
                return  # already caught up from the log
            self._extend(self._missing(transitions[0].seq - 1))
            self._extend([t for t in transitions if t.seq > self.last_seq])

    def _missing(self, upto: int) -> list[Transition]:
        """Transitions other replicas committed after ours, up to `upto` (from the log)."""
        found: list[Transition] = []
        while self.last_seq + len(found) < upto:
            cursor = self.last_seq + len(found)
            page = self._store.read(lambda tx, at=cursor: _from_log(tx, at, PAGE, EVERYTHING))
            if not page:
                break
            found += [t for t in page if t.seq <= upto]
        return found

    def _extend(self, transitions: list[Transition]) -> None:
        """Append to the ring and wake subscribers; the caller holds the lock."""
        if not transitions:
            return
        self._ring.extend((t, json.dumps(t.to_dict()).encode()) for t in transitions)
        if len(self._ring) > 2 * self._capacity:  # trim in bulk: amortised O(1)
            del self._ring[: len(self._ring) - self._capacity]
        self.last_seq = transitions[-1].seq
        for listener in self._listeners:
            try:
                listener(transitions)
            except Exception:  # the others, and the commit, go on
                log.exception("an event listener failed")
        self._cond.notify_all()
        for loop in list(self._loops):
            try:
                loop.call_soon_threadsafe(self._wake, loop)
            except RuntimeError:  # that loop is closed
                self._loops.pop(loop, None)

    def after(
        self,
        seq: int,
        limit: int = PAGE,
        pipeline: str | None = None,
        only: EventFilter = EVERYTHING,
    ) -> list[Transition]:
        """Committed transitions with a sequence number above `seq`, oldest first (of
        `pipeline`, and matching `only`)."""
        return [t for t, _ in self.encoded_after(seq, limit, pipeline, only)]

    def encoded_after(
        self,
        seq: int,
        limit: int = PAGE,
        pipeline: str | None = None,
        only: EventFilter = EVERYTHING,
    ) -> list[tuple[Transition, bytes]]:
        """Like `after`, each transition with its JSON encoding."""
        if pipeline is not None:
            only = EventFilter(pipeline, only.entities)
        with self._cond:
            if self._ring and self._ring[0][0].seq <= seq + 1:
                start = seq + 1 - self._ring[0][0].seq
                if only == EVERYTHING:
                    return self._ring[start : start + limit]
                found = [e for e in self._ring[start:] if only.matches(e[0])]
                return found[:limit]
        older = self._store.read(lambda tx: _from_log(tx, seq, limit, only))
        return [(t, json.dumps(t.to_dict()).encode()) for t in older]

    def wait(self, seq: int, timeout: float) -> bool:
        """Block until something above `seq` is committed; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.last_seq > seq, timeout)

    async def wait_async(self, seq: int, timeout: float) -> bool:
        """Like `wait`, for a coroutine: every waiter of a loop shares one wake-up."""
        loop = asyncio.get_running_loop()
        with self._cond:
            if self.last_seq > seq:
                return True
            event = self._loops.get(loop)
            if event is None:
                event = self._loops[loop] = asyncio.Event()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return self.last_seq > seq
        return True

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        """In `loop`: wake its waiters; later ones wait on a fresh event."""
        with self._cond:
            event = self._loops.pop(loop, None)
        if event is not None:
            event.set()

    def stream(self, after: int = 0, stop: threading.Event | None = None) -> Iterator[Transition]:
        """Every transition after `after`, as committed, until `stop` is set."""
        cursor = after
        while stop is None or not stop.is_set():
            batch = self.after(cursor)
            if batch:
                yield from batch
                cursor = batch[-1].seq
            else:
                self.wait(cursor, 0.5)


def _from_log(tx: Tx, seq: int, limit: int, only: EventFilter) -> list[Transition]:
    where, args = ["seq > ?"], [seq]
    if only.pipeline is not None:
        where.append("pipeline = ?")
        args.append(only.pipeline)
    if only.entities is not None:
        where.append(f"entity IN ({', '.join('?' * len(only.entities))})")
        args += sorted(only.entities)
    query = f"SELECT * FROM transitions WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
    return [Transition.from_row(r) for r in tx.all(query, *args, limit)]
