"""Remote orchestrators as the auctioneer sees them: bidders that live behind a stream.

`otto orchestrator --server URL` registers (`POST /v1/orchestrators`), then
holds `GET /v1/orchestrators/{name}/messages` open: a server-sent event
stream on which `RemoteBidder` pushes what the auctioneer tells a bidder.
Messages (`event:` name, `data:` JSON):

- `hello` `{name, lease_seconds, auction_window}`: first on every connection;
- `auction` `{id, window, lots: [{context, pipeline, name, needs}]}`: answer with
  `POST /v1/auctions/{id}/bids` (only lots this orchestrator can run are sent);
- `award` `{lot, model}`: the orchestrator won `lot` (`model`: the
  context to run) and may claim it now; the claim answers with the whole work
  order. Awards not yet claimed are sent again on every reconnection, so one
  lost with a dropped connection is not lost;
- `moved` `{pipeline, context, state}`: a context this orchestrator holds is to
  be aborted (`state` `Aborting`): stop its agent;
- `lost` `{lot}`: this orchestrator had the cheapest bid for `lot` here, but another
  replica's auction awarded it first (or its run moved on): nothing to do.

Several replicas may share one database, each with its own auctioneer and registry: an
orchestrator connects to any one of them (and to another when that one dies). The awards
it holds are in the database, so the replica it connects to tells it of every one not yet
claimed, whichever replica made it.

`Orchestrators`, the registry, hears every committed transition from the PSM's event
hub (not through the auctioneer) and tells each bidder of its contexts' moves.

A bidder is in the auction only while its stream is connected. When the stream
drops, it leaves the auction at once; if it has not reconnected within the
grace period it is forgotten and the contexts awarded to it but never claimed
are given back to be auctioned again (those it runs end with their leases). A
replica that starts gives the same grace to every orchestrator holding unclaimed awards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from otto.auction.auctioneer import Auction, Auctioneer, Lot, lots_of
from otto.auction.requirements import Capabilities
from otto.psm import NotFound, PipelineStateMachine, Transition
from otto.psm.states import ABORTING, AUCTION_STARTED, PENDING, RUNNING, TERMINAL, Entity

log = logging.getLogger("otto.auction.remote")

HEARTBEAT_SECONDS = 10.0
BACKLOG = 10_000  # messages kept for a bidder between two connections


@dataclass(frozen=True)
class Registration:
    name: str
    capabilities: Capabilities
    capacity: int
    cost_factor: float
    instance: str | None = None


class NameTaken(Exception):
    """Another live orchestrator already goes by this name."""


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class RemoteBidder:
    """One remote orchestrator: pushes auctions, awards and moves to its message stream."""

    def __init__(self, reg: Registration, psm: PipelineStateMachine, window: float) -> None:
        self.reg = reg
        self.name = reg.name
        self.capabilities = reg.capabilities
        self.psm = psm
        self.window = window
        self.held: dict[str, tuple[Lot, str]] = {}  # awarded context → (lot, its state)
        self._lock = threading.Lock()
        self._backlog: deque[bytes] = deque(maxlen=BACKLOG)
        self._queue: asyncio.Queue[bytes | None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.generation = 0  # which connection is the current one

    # -- the Bidder protocol (called from the auctioneer's threads) ----------------
    def announce(self, auction: Auction) -> None:
        lots = [lot.to_dict() for lot in auction.lots if self.capabilities.satisfy(lot.needs)]
        self._push(sse("auction", {"id": auction.id, "window": self.window, "lots": lots}))

    def awarded(self, lot: Lot) -> None:
        with self._lock:
            if lot.context in self.held:
                return  # told already (by this replica's auctioneer, or from the database)
            self.held[lot.context] = (lot, PENDING)
        self._push(self._award(lot))

    def lost(self, lot: Lot) -> None:
        """Its bid for `lot` was the best here, but the context went to another."""
        self._push(sse("lost", {"lot": lot.to_dict()}))

    def hold(self, lots: list[Lot]) -> None:
        """Awards it holds already (from the database): sent on every connection."""
        with self._lock:
            for lot in lots:
                self.held.setdefault(lot.context, (lot, PENDING))

    def moved(self, pipeline: str, context: str, state: str) -> None:
        """A context changed state: keep track of those held; pass on an abort of one."""
        with self._lock:
            if context not in self.held:
                return
            if state in TERMINAL[Entity.CONTEXT] or state == PENDING:
                del self.held[context]  # over, or handed back: no longer ours
            else:
                self.held[context] = (self.held[context][0], state)
        if state == ABORTING:
            self._push(sse("moved", {"pipeline": pipeline, "context": context, "state": state}))

    # -- the stream -----------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._queue is not None

    def attach(self) -> tuple[int, asyncio.Queue[bytes | None]]:
        """A new connection takes over (an older one ends); queued messages go to it."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        with self._lock:
            if self._queue is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, None)
            self.generation += 1
            self._queue, self._loop = queue, asyncio.get_running_loop()
            for message in self._backlog:
                queue.put_nowait(message)
            self._backlog.clear()
            unclaimed = [lot for lot, state in self.held.values() if state == PENDING]
        for lot in unclaimed:
            queue.put_nowait(self._award(lot))
        return self.generation, queue

    def detach(self, generation: int) -> bool:
        """The connection `generation` ended; True if it was the current one."""
        with self._lock:
            if generation != self.generation:
                return False
            self._queue = self._loop = None
            return True

    def close(self) -> None:
        with self._lock:
            if self._queue is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, None)

    async def messages(self, queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
        hello = {
            "name": self.name,
            "lease_seconds": self.psm.lease_seconds,
            "auction_window": self.window,
        }
        yield sse("hello", hello)
        while True:
            try:
                message = await asyncio.wait_for(queue.get(), HEARTBEAT_SECONDS)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if message is None:
                return  # a newer connection took over, or the server stops
            yield message

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            running = sum(1 for _, state in self.held.values() if state in (RUNNING, ABORTING))
            awarded = len(self.held) - running
        return {
            "name": self.name,
            "remote": True,
            "connected": self.connected,
            "capabilities": self.capabilities.to_dict(),
            "capacity": self.reg.capacity,
            "cost_factor": self.reg.cost_factor,
            "running": running,
            "awarded": awarded,
        }

    def _push(self, message: bytes) -> None:
        with self._lock:
            if self._queue is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, message)
            else:
                self._backlog.append(message)

    def _award(self, lot: Lot) -> bytes:
        data: dict[str, Any] = {"lot": lot.to_dict()}
        with contextlib.suppress(NotFound):  # else the orchestrator asks for it
            data["model"] = self.psm.context_model(lot.pipeline, lot.context).model_dump(
                mode="json"
            )
        return sse("award", data)


class Orchestrators:
    """The registry of remote orchestrators; each joins the auction while connected."""

    def __init__(
        self, auctioneer: Auctioneer, psm: PipelineStateMachine, grace: float = 10.0
    ) -> None:
        self.auctioneer = auctioneer
        self.psm = psm
        self.grace = grace
        self._remote: dict[str, RemoteBidder] = {}
        self._timers: dict[str, threading.Timer] = {}
        self._lock = threading.Lock()
        psm.events.subscribe(self._heard)

    def _heard(self, transitions: list[Transition]) -> None:
        """An event hub listener (quick, never blocking): each bidder hears of the moves of
        the contexts it holds, and of its awards in a batch whose auction just ended."""
        bidders = self.all()
        for t in transitions:
            if t.entity == Entity.BATCH and t.from_state == AUCTION_STARTED and bidders:
                threading.Thread(target=self._tell_awards, args=(t.pipeline,)).start()
            if t.entity != Entity.CONTEXT:
                continue
            for bidder in bidders:
                try:
                    bidder.moved(t.pipeline, t.id, t.to_state)
                except Exception:
                    log.exception("orchestrator %s failed to hear of a move", bidder.name)

    def _tell_awards(self, pipeline: str) -> None:
        """Tell connected bidders of their awards in `pipeline` that may be claimed now: an
        award another replica made, in a batch whose auction ended since, is told here
        (this replica's own awards its auctioneer tells; told twice, the second is a no-op)."""
        try:
            rows = self.psm.unclaimed_awards(pipeline=pipeline, claimable=True)
            for lot in lots_of(self.psm, rows):
                row = next(r for r in rows if r["uuid"] == lot.context)
                bidder = self.get(row["orchestrator"])
                if bidder is not None and bidder.connected and lot.context not in bidder.held:
                    bidder.awarded(lot)
        except Exception:
            log.exception("telling the awards of pipeline %s failed", pipeline)

    def register(self, reg: Registration) -> RemoteBidder:
        with self._lock:
            known = self._remote.get(reg.name)
            local = any(b.name == reg.name for b in self.auctioneer.bidders()) and known is None
            if local or (known and known.connected and known.reg.instance != reg.instance):
                raise NameTaken(f"an orchestrator named {reg.name!r} is already connected")
            new = known is None
            if known is None:
                known = self._remote[reg.name] = RemoteBidder(reg, self.psm, self.auctioneer.window)
            else:
                known.reg, known.capabilities = reg, reg.capabilities
        if new:  # awarded before it came here (by another replica, or before a restart)
            held = self.psm.unclaimed_awards(reg.name, claimable=True)
            known.hold(lots_of(self.psm, held))
            self._expire_later(reg.name, known.generation)  # it must connect in time
        elif known.connected:
            self.auctioneer.register(known)  # new capabilities: auction again
        return known

    def get(self, name: str) -> RemoteBidder | None:
        with self._lock:
            return self._remote.get(name)

    def all(self) -> list[RemoteBidder]:
        with self._lock:
            return list(self._remote.values())

    def connected(self, bidder: RemoteBidder) -> None:
        with self._lock:
            timer = self._timers.pop(bidder.name, None)
        if timer is not None:
            timer.cancel()
        self.auctioneer.register(bidder)

    def disconnected(self, bidder: RemoteBidder, generation: int) -> None:
        if bidder.detach(generation):
            self.auctioneer.unregister(bidder.name)
            self._expire_later(bidder.name, bidder.generation)

    def forget(self, name: str) -> bool:
        """Drop an orchestrator now; give back what it was awarded and has not started."""
        with self._lock:
            bidder = self._remote.pop(name, None)
            timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()
        if bidder is None:
            return False
        self.auctioneer.unregister(name)
        bidder.close()
        self._give_back(name)
        return True

    def expect_holders(self) -> None:
        """At the start: every remote orchestrator holding awards not claimed yet has the
        grace period to connect here (or to claim them through another replica); after it
        they are given back and auctioned again."""
        holders = {row["orchestrator"] for row in self.psm.unclaimed_awards()}
        for name in sorted(holders - {b.name for b in self.auctioneer.bidders()}):
            self._expire_later(name, 0)

    def _give_back(self, name: str) -> None:
        try:
            given = self.psm.release_unclaimed(name)
        except Exception as exc:
            log.warning("giving back the awards of %s failed: %s", name, exc)
            return
        if given:
            log.info("gave back %d award(s) of %s", given, name)
        self.auctioneer.poke()

    def close(self) -> None:
        self.psm.events.unsubscribe(self._heard)
        with self._lock:
            timers, self._timers = list(self._timers.values()), {}
            bidders = list(self._remote.values())
        for timer in timers:
            timer.cancel()
        for bidder in bidders:
            bidder.close()

    def _expire_later(self, name: str, generation: int) -> None:
        def expire() -> None:
            bidder = self.get(name)
            if bidder is None:  # known from the database only (`expect_holders`)
                log.warning("orchestrator %s did not come within %.0f s", name, self.grace)
                self._give_back(name)
            elif not bidder.connected and bidder.generation == generation:
                log.warning("orchestrator %s did not come back within %.0f s", name, self.grace)
                self.forget(name)

        timer = threading.Timer(self.grace, expire)
        timer.daemon = True
        with self._lock:
            old = self._timers.pop(name, None)
            self._timers[name] = timer
        if old is not None:
            old.cancel()
        timer.start()
