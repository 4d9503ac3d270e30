"""An orchestrator: bids for contexts, provisions workspaces, runs and watches agents.

The same class serves in `otto server` (talking to the PSM in process) and as
`otto orchestrator --server URL` on another machine (talking to it over
HTTP): all it needs of the PSM is the executor interface, `Executor` below.
Each awarded context is claimed (a lease with an epoch), handed to an agent
process forked from the agent zygote, and its reports are relayed to the PSM under
that lease. A renewal thread keeps the leases alive and stops the agents of
contexts the PSM wants aborted.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from otto.agent.invocation import Checkout, Invocation
from otto.auction import Auction, Capabilities, Lot
from otto.model import Context
from otto.orchestrator.pool import AgentPool, AgentProcess
from otto.psm import Conflict, Lease, NotFound, Transition
from otto.psm.states import ABORTING, PENDING, PROVISIONING, TERMINAL, Entity
from otto.status import Status

log = logging.getLogger("otto.orchestrator")


class Executor(Protocol):
    """What an orchestrator needs of the PSM (the PSM itself, or its HTTP client)."""

    def claim(self, context: str, orchestrator: str) -> Lease: ...
    def renew(self, lease: Lease) -> Lease: ...
    def release(self, context: str, orchestrator: str) -> None: ...
    def step_started(self, lease: Lease, step: str) -> None: ...
    def step_finished(
        self,
        lease: Lease,
        step: str,
        exit_code: int | None = None,
        status: Status | None = None,
        reason: str | None = None,
    ) -> Status: ...
    def context_finished(self, lease: Lease, status: Status, reason: str | None = None) -> None: ...
    def context_model(self, pipeline: str, context: str) -> Context: ...
    def hand_back(self, lease: Lease) -> None: ...


class Bids(Protocol):
    """Where the orchestrator's bids go (the auctioneer, in process or over HTTP)."""

    def bid(self, auction_id: int, orchestrator: str, costs: dict[str, float]) -> Any: ...
    def poke(self) -> None: ...


@dataclass
class Running:
    lot: Lot
    lease: Lease
    agent: AgentProcess
    stopping: bool = False


class Orchestrator:
    def __init__(
        self,
        executor: Executor,
        bids: Bids,
        objects_url: str,
        workspace_root: Path,
        name: str = "local",
        capacity: int = 4,
        cost_factor: float = 1.0,
        labels: str | None = None,
        lease_seconds: float = 30.0,
        checkout: Callable[[str], Checkout | None] | None = None,
    ) -> None:
        self.executor = executor
        self.bids = bids
        self.objects_url = objects_url
        self.workspace_root = workspace_root
        self.name = name
        self.capacity = capacity
        self.cost_factor = cost_factor
        self.capabilities = Capabilities.of_this_machine(labels)
        self.lease_seconds = lease_seconds
        self.checkout = checkout  # a pipeline → the commit its workspaces start from
        self.pool = AgentPool()
        self._running: dict[str, Running] = {}
        self._waiting: dict[str, Lot] = {}  # awarded, not yet claimable (Linear order)
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[Lot | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._start_loop, name=f"{name}-start", daemon=True),
            threading.Thread(target=self._renew_loop, name=f"{name}-renew", daemon=True),
        ]
        (workspace_root / ".invocations").mkdir(parents=True, exist_ok=True)

    # -- as a bidder -------------------------------------------------------------
    def announce(self, auction: Auction) -> None:
        """Bid for every context this orchestrator can run, busy or not: a batch is only
        provisioned once all its contexts are awarded, so a bid held back for want of a
        free slot would stall a batch wider than the capacity. The cost is the queue
        the context would join (per slot, times the cost factor): the less busy
        orchestrator wins, and contexts beyond the capacity wait here for a slot."""
        costs: dict[str, float] = {}
        if not self._stopping.is_set():
            with self._lock:
                queued = len(self._running) + len(self._waiting)
            for lot in auction.lots:
                if self.capabilities.satisfy(lot.needs):
                    queued += 1
                    costs[lot.context] = round(self.cost_factor * queued / self.capacity, 6)
        self.bids.bid(auction.id, self.name, costs)

    def awarded(self, lot: Lot) -> None:
        with self._lock:
            if lot.context in self._running or self._stopping.is_set():
                return  # told twice (a remote orchestrator's reconnection)
            self._waiting[lot.context] = lot
        self._work.put(lot)

    def moved(self, pipeline: str, context: str | None, state: str) -> None:
        """A context changed state (`Bidder.moved`): stop its agent if it is to be aborted;
        when one ends or a batch is provisioned, what waits here in that pipeline may start."""
        if state == ABORTING and context is not None:
            with self._lock:
                run = self._running.get(context)
            if run is not None and not run.stopping:
                run.stopping = True
                run.agent.terminate()
        elif state in TERMINAL[Entity.CONTEXT] or state == PROVISIONING:
            with self._lock:
                lots = [lot for lot in self._waiting.values() if lot.pipeline == pipeline]
            for lot in lots:
                self._work.put(lot)

    def retry_waiting(self) -> None:
        """Contexts that waited for the one before them (Linear) may start now."""
        with self._lock:
            lots = list(self._waiting.values())
        for lot in lots:
            self._work.put(lot)

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, grace: float = 10.0) -> None:
        """Take no more work; let running contexts finish within `grace` seconds, then
        hand the rest back to the PSM (to run again after a restart) and stop their agents."""
        self._stopping.set()
        self._work.put(None)
        with self._lock:
            waiting, self._waiting = list(self._waiting), {}
        for context in waiting:  # awarded, never started: someone else may run them
            self._report(lambda c=context: self.executor.release(c, self.name))
        deadline = time.monotonic() + grace
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            left = list(self._running.values())
        for run in left:
            run.stopping = True
            self._report(lambda r=run: self.executor.hand_back(r.lease))
            run.agent.terminate()
        for run in left:
            try:
                run.agent.wait(5)
            except TimeoutError:
                run.agent.kill()
        self.pool.close()

    def running(self) -> int:
        with self._lock:
            return len(self._running)

    # -- starting contexts -------------------------------------------------------
    def _start_loop(self) -> None:
        while (lot := self._work.get()) is not None:
            with self._lock:
                if lot.context not in self._waiting:
                    continue  # already started or given up
                if len(self._running) >= self.capacity:
                    continue  # it waits for a slot: tried again when an agent ends
            try:
                lease = self.executor.claim(lot.context, self.name)
            except Conflict as exc:
                if exc.current == PENDING:
                    # Not yet: the one before it runs (Linear), or its batch's auction is still
                    # open. Tried again on the next move in the pipeline (and now and then).
                    continue
                with self._lock:
                    self._waiting.pop(lot.context, None)
                continue
            except NotFound:
                with self._lock:
                    self._waiting.pop(lot.context, None)
                continue
            with self._lock:
                self._waiting.pop(lot.context, None)
            self._launch(lot, lease)

    def _launch(self, lot: Lot, lease: Lease) -> None:
        try:
            context = self.executor.context_model(lot.pipeline, lot.context)
            invocation = Invocation(
                pipeline=lot.pipeline,
                context=context,
                object_store=self.objects_url,
                workspace_root=self.workspace_root,
                lease={"epoch": lease.epoch, "orchestrator": self.name},
                checkout=self.checkout(lot.pipeline) if self.checkout else None,
            )
            path = self.workspace_root / ".invocations" / f"{lot.context}.json"
            _write_private(path, invocation.model_dump_json())
            agent = self.pool.take()
            agent.start(path)
        except Exception as exc:
            log.exception("cannot start context %s", lot.context)
            reason = f"provisioning_failed: {exc}"
            self._report(lambda: self.executor.context_finished(lease, Status.ERROR, reason))
            return
        run = Running(lot, lease, agent)
        with self._lock:
            self._running[lot.context] = run
        threading.Thread(target=self._relay, args=(run,), daemon=True).start()

    def _relay(self, run: Running) -> None:
        """Pass the agent's reports to the PSM, under the context's lease."""
        finished = False
        for line in run.agent.reports():
            try:
                report = json.loads(line)
            except ValueError:
                continue
            event = report.get("event")
            if event == "step_started":
                self._report(lambda r=report: self.executor.step_started(run.lease, r["step"]))
            elif event == "step_finished":
                self._report(
                    lambda r=report: self.executor.step_finished(
                        run.lease,
                        r["step"],
                        r.get("exit_code"),
                        Status(r["status"]),
                        r.get("reason"),
                    )
                )
            elif event == "context_finished":
                finished = True
                self._report(
                    lambda r=report: self.executor.context_finished(
                        run.lease, Status(r["status"]), r.get("reason")
                    )
                )
        code = run.agent.wait()
        if not finished:  # the agent died without a word
            self._report(
                lambda: self.executor.context_finished(
                    run.lease, Status.ERROR, f"agent_exited ({code})"
                )
            )
        with self._lock:
            self._running.pop(run.lot.context, None)
        self.retry_waiting()
        self.bids.poke()  # capacity freed

    def _report(self, call: Any) -> None:
        try:
            call()
        except (Conflict, NotFound) as exc:
            log.info("report refused: %s", exc)  # a stale lease or an aborted run
        except Exception as exc:  # e.g. the server unreachable for too long: the lease decides
            log.warning("report lost: %s", exc)

    # -- aborts ---------------------------------------------------------------------
    def watch(self, transitions: Iterable[Transition]) -> None:
        """Stop an agent as soon as its context is to be aborted (not at the next renewal)."""
        for t in transitions:
            if t.entity == "context":
                self.moved(t.pipeline, t.id, t.to_state)

    # -- leases -------------------------------------------------------------------
    def _renew_loop(self) -> None:
        due = 0.0
        # Short ticks: `lease_seconds` may change (a remote learns it when it registers).
        while not self._stopping.wait(min(0.5, max(0.05, self.lease_seconds / 6))):
            if time.monotonic() < due:
                continue
            due = time.monotonic() + self.lease_seconds / 3
            self.retry_waiting()  # a safety net: a missed move must not strand a context
            with self._lock:
                running = list(self._running.values())
            for run in running:
                try:
                    lease = self.executor.renew(run.lease)
                except (Conflict, NotFound):
                    run.agent.terminate()  # the PSM no longer counts on this attempt
                    continue
                except Exception:
                    log.exception("renewing the lease of %s failed", run.lot.context)
                    continue
                if lease.aborting and not run.stopping:
                    run.stopping = True
                    run.agent.terminate()


def _write_private(path: Path, text: str) -> None:
    """The invocation may hold credentials (the object store's token): owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as file:
        file.write(text)
