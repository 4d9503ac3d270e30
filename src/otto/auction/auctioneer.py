"""The auctioneer: open contexts go to the cheapest able orchestrator.

When contexts wait for an orchestrator (a batch reached `AuctionStarted`, a
winner gave one back, an orchestrator registered or freed capacity), the
auctioneer opens an auction of all of them and announces it to every
registered orchestrator that can run at least one. Each answers with a cost
per context it will take (or none). The auction closes as soon as every
invited orchestrator has answered, or when the window ends; each context goes
to its cheapest bid (ties: the orchestrator's name), which the PSM records as
the award. A context nobody bid for stays open and is auctioned again on the
next change. Every replica of a shared database runs its own auctioneer for the
orchestrators connected to it: the PSM makes each award once (`otto.psm.awards`), and a
winner whose award another replica's auction made first is told it lost. With one
in-process orchestrator, which answers inside `announce`, an auction closes without
waiting at all.

Only contexts that may start now are auctioned (the PSM's `open_contexts`: a Linear
batch's next one), and a winner hears of its award once it may claim it: at once,
or, while its batch still waits for a bid on another context, when that batch is
provisioned. Aborts do not pass through here: orchestrators hear them from the
event hub themselves.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from otto.auction.requirements import Capabilities, Requirements
from otto.psm import Conflict, NotFound, PipelineStateMachine
from otto.psm.records import Transition
from otto.psm.states import ABORTING, AUCTION_STARTED, RUNNING, Entity
from otto.serverlog import fields

log = logging.getLogger("otto.auction")

DEFAULT_WINDOW = 0.05  # seconds
RETRY_EVERY = 2.0  # seconds between auctions of contexts nobody bid for
HISTORY = 200  # closed auctions kept for GET /v1/auctions


@dataclass(frozen=True)
class Lot:
    """One context up for auction."""

    context: str
    pipeline: str
    name: str
    needs: Requirements

    def to_dict(self) -> dict[str, Any]:
        return {
            "context": self.context,
            "pipeline": self.pipeline,
            "name": self.name,
            "needs": self.needs.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Lot:
        return cls(
            context=str(data["context"]),
            pipeline=str(data["pipeline"]),
            name=str(data.get("name", "")),
            needs=Requirements.from_dict(data.get("needs") or {}),
        )


@dataclass
class Auction:
    id: int
    lots: list[Lot]
    invited: set[str]
    opened_at: float = field(default_factory=time.time)
    answered: set[str] = field(default_factory=set)
    bids: dict[str, dict[str, float]] = field(default_factory=dict)  # context → bidder → cost
    awards: dict[str, str] = field(default_factory=dict)  # context → orchestrator
    # Lots this auction chose a winner for that another auction (another replica's) had
    # awarded first: context → the winner here, who is told it lost.
    lost: dict[str, str] = field(default_factory=dict)
    closed_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": "closed" if self.closed_at else "open",
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "lots": [lot.to_dict() for lot in self.lots],
            "invited": sorted(self.invited),
            "answered": sorted(self.answered),
            "bids": [
                {"context": ctx, "orchestrator": who, "cost": cost}
                for ctx, offers in self.bids.items()
                for who, cost in sorted(offers.items())
            ],
            "awards": self.awards,
            "lost": self.lost,
        }


class Bidder(Protocol):
    """An orchestrator as the auctioneer sees it."""

    name: str
    capabilities: Capabilities

    def announce(self, auction: Auction) -> None:
        """Hear of an auction; answer (now or later) with `Auctioneer.bid`."""

    def awarded(self, lot: Lot) -> None:
        """The orchestrator won `lot`: it may claim the context now."""


class Auctioneer:
    def __init__(self, psm: PipelineStateMachine, window: float = DEFAULT_WINDOW) -> None:
        self.psm = psm
        self.window = window
        self._bidders: dict[str, Bidder] = {}
        self._open: Auction | None = None
        self._history: deque[Auction] = deque(maxlen=HISTORY)
        self._ids = itertools.count(1)
        # Awards in batches whose auction is still open, by pipeline: told when it closes.
        self._unclaimable: dict[str, list[tuple[Lot, str]]] = {}
        self._to_tell: list[tuple[Lot, str]] = []  # awards claimable since, to tell
        self._lock = threading.Condition()
        self._poked = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- orchestrators ----------------------------------------------------------
    def register(self, bidder: Bidder) -> None:
        with self._lock:
            joined = bidder.name not in self._bidders
            self._bidders[bidder.name] = bidder
        if joined:
            can = bidder.capabilities
            labels = ",".join(sorted(can.labels)) or None
            log.info(
                "orchestrator joined",
                extra=fields(name=bidder.name, labels=labels, containers=can.containers),
            )
        self.poke()

    def unregister(self, name: str) -> None:
        with self._lock:
            left = self._bidders.pop(name, None) is not None
            if self._open is not None:
                self._open.invited.discard(name)
                self._lock.notify_all()
        if left:
            log.info("orchestrator left", extra=fields(name=name))

    def bidders(self) -> list[Bidder]:
        with self._lock:
            return list(self._bidders.values())

    def bid(self, auction_id: int, orchestrator: str, costs: dict[str, float]) -> bool:
        """An orchestrator's answer: a cost per context it will run (empty: none)."""
        with self._lock:
            auction = self._open
            if auction is None or auction.id != auction_id or orchestrator not in auction.invited:
                return False
            lots = {lot.context for lot in auction.lots}
            for context, cost in costs.items():
                if context in lots:
                    auction.bids.setdefault(context, {})[orchestrator] = float(cost)
            auction.answered.add(orchestrator)
            self._lock.notify_all()
            return True

    # -- running ------------------------------------------------------------------
    def poke(self) -> None:
        """Something changed that may let waiting contexts go: auction them."""
        self._poked.set()

    def start(self) -> None:
        self.psm.events.subscribe(self._heard)
        thread = threading.Thread(target=self._run, name="auctioneer", daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        self.psm.events.unsubscribe(self._heard)
        self._stopping.set()
        self._poked.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def auctions(self) -> list[dict[str, Any]]:
        """The open auction (if any) and the recent ones, newest first."""
        with self._lock:
            found = list(self._history)
            if self._open is not None:
                found.append(self._open)
            return [a.to_dict() for a in reversed(found)]

    def _heard(self, transitions: list[Transition]) -> None:
        """Committed transitions (an event listener: quick, never blocking): poke on those
        that can open or free work, or that close a batch's auction (awards to tell)."""
        for t in transitions:
            if t.entity == Entity.BATCH and t.from_state == AUCTION_STARTED:
                with self._lock:
                    self._to_tell += self._unclaimable.pop(t.pipeline, [])
                self.poke()
            elif _opens_or_frees(t):
                self.poke()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._poked.wait(RETRY_EVERY)
            self._poked.clear()
            if self._stopping.is_set():
                return
            try:
                self._tell_claimable()
                self.run_round()
            except Exception:  # keep auctioning; the next round retries
                log.exception("auction round failed")

    def _tell_claimable(self) -> None:
        with self._lock:
            due, self._to_tell = self._to_tell, []
        for lot, winner in due:
            self._tell(lot, winner)

    def run_round(self) -> Auction | None:
        """Auction every context that waits for an orchestrator; None if nothing to do."""
        lots = self._lots()
        with self._lock:
            invited = {
                name
                for name, b in self._bidders.items()
                if any(b.capabilities.satisfy(lot.needs) for lot in lots)
            }
            if not lots or not invited:
                return None
            auction = Auction(next(self._ids), lots, invited)
            self._open = auction
            bidders = [self._bidders[name] for name in invited]
        for bidder in bidders:
            try:
                bidder.announce(auction)
            except Exception:
                log.exception("orchestrator %s failed to hear auction %d", bidder.name, auction.id)
                self.bid(auction.id, bidder.name, {})
        deadline = auction.opened_at + self.window
        with self._lock:
            while auction.answered < auction.invited and time.time() < deadline:
                self._lock.wait(max(0.0, deadline - time.time()))
            auction.closed_at = time.time()
            self._open = None
            self._history.append(auction)
        self._award(auction)
        return auction

    def _lots(self) -> list[Lot]:
        return lots_of(self.psm, self.psm.open_contexts())

    def _award(self, auction: Auction) -> None:
        chosen: list[tuple[Lot, str]] = []
        for lot in auction.lots:
            offers = auction.bids.get(lot.context)
            if offers:
                winner = min(offers.items(), key=lambda offer: (offer[1], offer[0]))[0]
                chosen.append((lot, winner))
        if not chosen:
            return
        outcomes = self.psm.award_each([(lot.context, winner) for lot, winner in chosen])
        claimable: list[tuple[Lot, str]] = []
        deferred: set[str] = set()
        for (lot, winner), outcome in zip(chosen, outcomes, strict=True):
            if isinstance(outcome, Conflict):  # awarded elsewhere, or the run moved on
                auction.lost[lot.context] = winner
                self._tell_lost(lot, winner)
                continue
            if isinstance(outcome, Exception):  # still open: the next round tries it again
                log.error("awarding %s to %s failed: %s", lot.context, winner, outcome)
                continue
            auction.awards[lot.context] = winner
            if outcome:
                claimable.append((lot, winner))
            else:  # its batch waits for a bid on another context: told once it is provisioned
                with self._lock:
                    self._unclaimable.setdefault(lot.pipeline, []).append((lot, winner))
                deferred.add(lot.pipeline)
        # Told only once every award is recorded: a batch fully awarded is claimable by then.
        for lot, winner in claimable:
            self._tell(lot, winner)
        for pipeline in deferred:
            self._closed_meanwhile(pipeline)

    def _closed_meanwhile(self, pipeline: str) -> None:
        """Awards deferred just now whose batch's auction closed before they were put aside
        (its transition heard first): tell them now."""
        batches = self.psm.get(pipeline)["batches"]
        if all(b["state"] != AUCTION_STARTED for b in batches):
            with self._lock:
                self._to_tell += self._unclaimable.pop(pipeline, [])
            self.poke()

    def _tell_lost(self, lot: Lot, winner: str) -> None:
        """Tell a winner whose award the PSM refused that it lost `lot`. Only remote
        orchestrators are told (`lost` on their stream): none holds anything for a bid."""
        with self._lock:
            bidder = self._bidders.get(winner)
        lost = getattr(bidder, "lost", None)
        if lost is not None:
            try:
                lost(lot)
            except Exception:
                log.exception("orchestrator %s failed to hear it lost %s", winner, lot.context)

    def _tell(self, lot: Lot, winner: str) -> None:
        """Tell the winner of its award; one that cannot take it gives the context back."""
        with self._lock:
            bidder = self._bidders.get(winner)
        try:
            if bidder is None:
                raise LookupError(f"orchestrator {winner} left before its award")
            bidder.awarded(lot)
        except Exception as exc:  # nobody will claim it: give it back, auction it again
            log.warning("award of %s to %s failed: %s", lot.context, winner, exc)
            self.psm.release(lot.context, winner)
            self.poke()


def lots_of(psm: PipelineStateMachine, rows: list[dict[str, Any]]) -> list[Lot]:
    """The lots of contexts (rows with their `uuid` and `pipeline`), each with what it
    needs; those whose run is gone meanwhile are left out."""
    lots = []
    for row in rows:
        try:
            context = psm.context_model(row["pipeline"], row["uuid"])
        except NotFound:
            continue
        lots.append(
            Lot(row["uuid"], row["pipeline"], context.name, Requirements.of(context.properties))
        )
    return lots


def _opens_or_frees(t: Transition) -> bool:
    """Whether a transition may let a context wait for an orchestrator (its batch's auction
    opens, it is Pending again) or let a waiting one go (one ends: capacity is freed)."""
    if t.entity == Entity.BATCH:
        return t.to_state == AUCTION_STARTED
    return t.entity == Entity.CONTEXT and t.to_state not in (RUNNING, ABORTING)
