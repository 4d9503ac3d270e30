"""An orchestrator: bids for contexts, provisions workspaces, runs and watches agents.

The same class serves in `otto server` (talking to the PSM in process) and as
`otto orchestrator --server URL` on another machine (talking to it over
HTTP): all it needs of the PSM is the executor interface, `Executor` below.
Each awarded context is claimed, which answers with its whole work order (the lease
with its epoch, the context's model, the commit to check out, the run's variables,
the values of the credentials its stage asked for; an untrusted one, a fork's pull
request, gets no passthrough variables and never runs unsandboxed; one denied its
credentials ends Error at once), handed to an agent
process forked from the agent zygote, and its reports are relayed to the PSM under
that lease. An award is only made once the context may start, so a claim is refused
only when the context moved on (aborted, given to another): it is then dropped.
Aborts are heard as they happen (`watch`, fed by the PSM's event hub in process, or
`abort` by a remote orchestrator's message stream); the renewal thread keeps the
leases alive and stops the agents of contexts the PSM no longer counts on. Agents
outlive the orchestrator, holding their reports (`otto.orchestrator.adoption`): one
that starts again re-adopts those the PSM still counts on, before anything else. How an
agent isolates its context's steps (the host sandbox, a container of its image) is
the orchestrator's `IsolationPolicy` (`otto.isolation.policy`).
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from otto.agent.invocation import DEFAULT_MAX_LOG_BYTES, Invocation, JsonLinesReport
from otto.agent.workspace import remove_leftovers
from otto.auction import Auction, Capabilities, Lot
from otto.diskspace import DISK_FULL, STORE_UNAVAILABLE, trouble
from otto.isolation import ContainerSpec
from otto.isolation.container import remove as remove_container
from otto.isolation.container import remove_stale
from otto.isolation.policy import IsolationPolicy
from otto.model import Checkout
from otto.orchestrator import adoption
from otto.orchestrator.adoption import Held, HeldAgent
from otto.orchestrator.pool import AgentPool, AgentProcess
from otto.psm import Conflict, Lease, NotFound, Transition
from otto.psm.records import WorkOrder
from otto.psm.states import ABORTING, Entity, Reason
from otto.status import Status

AGENT_EXIT_SECONDS = 30.0  # from its reports' end to its exit (workspace cleanup included)

log = logging.getLogger("otto.orchestrator")


class Executor(Protocol):
    """What an orchestrator needs of the PSM (the PSM itself, or its HTTP client)."""

    def claim_work(
        self, context: str, orchestrator: str, isolation: str | None = None
    ) -> WorkOrder: ...
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
    def context_finished(
        self,
        lease: Lease,
        status: Status,
        reason: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> None: ...
    def hand_back(self, lease: Lease) -> None: ...


class Bids(Protocol):
    """Where the orchestrator's bids go (the auctioneer, in process or over HTTP)."""

    def bid(self, auction_id: int, orchestrator: str, costs: dict[str, float]) -> Any: ...
    def poke(self) -> None: ...


@dataclass
class Running:
    lot: Lot
    lease: Lease
    agent: AgentProcess | HeldAgent
    container: ContainerSpec | None = None
    stopping: bool = False
    # The steps the PSM keeps a state of: the context's own (a block's live in its log).
    steps: frozenset[str] = frozenset()
    held: Path | None = None  # its hold directory (otto.orchestrator.adoption)


class Orchestrator:
    def __init__(
        self,
        executor: Executor,
        bids: Bids,
        objects_url: str,
        workspace_root: Path,
        *,
        isolation: IsolationPolicy,
        name: str = "local",
        capacity: int = 4,
        cost_factor: float = 1.0,
        labels: str | None = None,
        lease_seconds: float = 30.0,
        default_checkout: Checkout | None = None,
        masked: Callable[[], list[str]] | None = None,
        max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
        on_trouble: Callable[[str, str], None] | None = None,
    ) -> None:
        self.executor = executor
        # Told when an agent's context ended for storage trouble (kind, detail): the
        # server's `otto.diskspace.SpaceWatch`, which has no other way to hear of it.
        self.on_trouble = on_trouble
        self.max_log_bytes = max_log_bytes  # per step log (otto.config `max_log_bytes`)
        self.bids = bids
        self.objects_url = objects_url
        self.workspace_root = workspace_root
        self.name = name
        self.capacity = capacity
        self.cost_factor = cost_factor
        self.isolation = isolation
        self.masked = masked or (lambda: self.isolation.secret_values())
        self.capabilities = Capabilities.of_this_machine(
            labels, containers=self.isolation.engine is not None
        )
        self.lease_seconds = lease_seconds
        # The commit a workspace starts from when the work order names none (`otto run`'s
        # embedded server: the working tree).
        self.default_checkout = default_checkout
        self.pool = AgentPool(objects_url, environ=self.isolation.agent_environ())
        self._running: dict[str, Running] = {}
        self._waiting: dict[str, Lot] = {}  # awarded, not started yet, in award order
        # Being claimed or started, no agent yet → whether an abort came meanwhile (applied
        # once the agent runs: the abort is said once, not repeated till the next renewal).
        self._launching: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)  # a slot or a context to try
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._start_loop, name=f"{name}-start", daemon=True),
            threading.Thread(target=self._renew_loop, name=f"{name}-renew", daemon=True),
        ]
        workspace_root.mkdir(parents=True, exist_ok=True)

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
        """Claim `lot` once a slot is free. An award of a context still running here waits
        for that run to end: it is a new attempt (the old one's lease was lost, the
        context retried), or the same award told twice (a reconnection), whose claim is
        then refused."""
        with self._lock:
            if self._stopping.is_set():
                return
            self._waiting[lot.context] = lot
            self._wakeup.notify()

    # -- aborts ---------------------------------------------------------------------
    def watch(self, transitions: Iterable[Transition]) -> None:
        """An event hub listener (quick, never blocking): stop an agent as soon as its
        context is to be aborted, not at the next renewal."""
        for t in transitions:
            if t.entity == Entity.CONTEXT and t.to_state == ABORTING:
                self.abort(t.id)

    def abort(self, context: str) -> None:
        """Stop the agent of `context` if it runs here (or as soon as it starts)."""
        with self._lock:
            run = self._running.get(context)
            if run is None and context in self._launching:
                self._launching[context] = True
        if run is not None and not run.stopping:
            run.stopping = True
            run.agent.terminate()

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        policy = self.isolation
        log.info("orchestrator %s: %s", self.name, policy.describe())
        if policy.sandbox_problem:
            log.error("orchestrator %s: %s", self.name, policy.sandbox_refusal())
        elif policy.sandbox == "none":
            log.warning("orchestrator %s: sandbox: none — steps run unsandboxed", self.name)
        for warning in policy.exposed():
            log.warning("orchestrator %s: %s", self.name, warning)
        adopted = self._adopt()
        if policy.engine is not None:
            engine = [policy.engine, *policy.engine_args]
            stale = remove_stale(engine, str(self.workspace_root), keep=adopted)
            if stale:
                log.warning("removed %d container(s) left behind by an earlier run", stale)
        leftovers = remove_leftovers()
        if leftovers:
            log.info("removed %d control directories of agents that were killed", leftovers)
        for thread in self._threads:
            thread.start()

    def _adopt(self) -> set[str]:
        """Re-adopt the agents this orchestrator left when it died, still running or gone
        after their last report, whose leases the PSM renews; stop the others. The names
        of the adopted ones' containers (to be kept)."""
        kept: set[str] = set()
        for held in adoption.held_agents(self.workspace_root):
            if held.orchestrator != self.name:
                continue
            run = self._adoptable(held)
            if run is None:
                continue
            log.info("re-adopted the agent of context %s (pid %d)", held.lot.context, held.pid)
            with self._lock:
                self._running[held.lot.context] = run
            if run.container is not None:
                kept.add(run.container.name)
            if run.stopping:
                run.agent.terminate()
            threading.Thread(target=self._relay, args=(run,), daemon=True).start()
        return kept

    def _adoptable(self, held: Held) -> Running | None:
        """The held agent as a running context, if the PSM still counts on its attempt."""
        if not held.alive() and not held.finished():
            held.forget()  # lost without its last report: its lease expires (agent_lost)
            return None
        try:
            lease = self.executor.renew(held.lease())
        except (Conflict, NotFound) as exc:  # its context moved on: a stale attempt
            log.info("not re-adopting the agent of %s: %s", held.lot.context, exc)
            held.signal(signal.SIGTERM)
            held.forget()
            return None
        except Exception:
            log.exception("cannot re-adopt the agent of %s now", held.lot.context)
            return None
        agent = HeldAgent(held)
        return Running(
            held.lot, lease, agent, held.container, lease.aborting, held.steps, held.directory
        )

    def stop(self, grace: float = 10.0) -> None:
        """Take no more work; let running contexts finish within `grace` seconds, then
        hand the rest back to the PSM (to run again after a restart) and stop their agents."""
        self._stopping.set()
        with self._lock:
            waiting, self._waiting = list(self._waiting), {}
            self._wakeup.notify()
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
            if run.container is not None:  # its agent may not have got to it
                remove_container(run.container)
        self.pool.close()

    def running(self) -> int:
        with self._lock:
            return len(self._running)

    # -- starting contexts -------------------------------------------------------
    def _start_loop(self) -> None:
        while (lot := self._next()) is not None:
            try:
                isolation = self.isolation.kind_for(lot.needs.container)
                order = self.executor.claim_work(lot.context, self.name, isolation)
            except (Conflict, NotFound) as exc:  # aborted, given back, or run elsewhere
                log.info("claim of %s refused: %s", lot.context, exc)
                with self._lock:
                    self._launching.pop(lot.context, None)
                    self._waiting.pop(lot.context, None)
                continue
            with self._lock:
                self._waiting.pop(lot.context, None)
            self._launch(lot, order)

    def _next(self) -> Lot | None:
        """Once a slot is free, the first waiting context (None: stopping). Waiting here
        costs nothing per context, however many wait."""
        with self._lock:
            while not self._stopping.is_set():
                free = (c for c in self._waiting.values() if c.context not in self._running)
                lot = next(free, None) if len(self._running) < self.capacity else None
                if lot is not None:
                    self._launching[lot.context] = False
                    return lot
                self._wakeup.wait()
        return None

    def _launch(self, lot: Lot, order: WorkOrder) -> None:
        lease, context = order.lease, order.context
        held: Path | None = None
        try:
            refusal = order.denied or self.isolation.refusal(context, order.untrusted)
            if refusal is not None:
                self._refuse(lot, lease, refusal)
                return
            container = self.isolation.container_spec(
                lot.pipeline, context, lease.epoch, str(self.workspace_root)
            )
            held = adoption.hold_directory(self.workspace_root, lot.context, lease.epoch)
            invocation = Invocation(
                pipeline=lot.pipeline,
                context=context,
                object_store=self.objects_url,
                workspace_root=self.workspace_root,
                report=JsonLinesReport(hold=str(held / adoption.REPORTS)),
                lease={"epoch": lease.epoch, "orchestrator": self.name},
                checkout=order.checkout or self.default_checkout,
                passthrough={} if order.untrusted else self.isolation.passthrough_values(),
                variables=order.variables,
                credentials=order.credentials,
                masked=self.masked(),
                sandbox=self.isolation.sandbox_spec(),
                container=container,
                max_log_bytes=self.max_log_bytes,
                deadline=lease.deadline,
            )
            agent = self.pool.take()
            agent.start(invocation.model_dump_json())
        except Exception as exc:
            log.exception("cannot start context %s", lot.context)
            if held is not None:
                shutil.rmtree(held, ignore_errors=True)
            self._refuse(lot, lease, f"provision_failed: cannot start an agent: {exc}")
            return
        steps = frozenset(s.uuid for s in context.steps)
        run = Running(lot, lease, agent, container, steps=steps, held=held)
        self._hold(run)
        with self._lock:
            self._running[lot.context] = run
            run.stopping = self._launching.pop(lot.context, False)  # aborted while starting
        if run.stopping:
            agent.terminate()
        threading.Thread(target=self._relay, args=(run,), daemon=True).start()

    def _hold(self, run: Running) -> None:
        """Write down who the agent is, for a restarted orchestrator to re-adopt it."""
        assert run.held is not None and run.agent.pid is not None
        try:
            adoption.record(run.held, run.lot, run.lease, run.agent.pid, run.steps, run.container)
        except OSError:
            log.exception("cannot record the agent of %s for re-adoption", run.lot.context)

    def _refuse(self, lot: Lot, lease: Lease, reason: str) -> None:
        """End a claimed context in Error without an agent: it cannot run here."""
        with self._lock:
            self._launching.pop(lot.context, None)
        self._report(lambda: self.executor.context_finished(lease, Status.ERROR, reason))

    def _relay(self, run: Running) -> None:
        """Pass the agent's reports to the PSM, under the context's lease."""
        final: dict[str, Any] | None = None
        for line in run.agent.reports():
            try:
                report = json.loads(line)
            except ValueError:
                continue
            event = report.get("event")
            if event in ("step_started", "step_finished") and report.get("step") not in run.steps:
                continue
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
                    ),
                    patient=True,
                )
            elif event == "context_finished":
                final = report
        code = self._reap(run)
        if run.container is not None and not 0 <= code <= 4:  # the agent did not end it
            remove_container(run.container)
        if final is not None:  # told only now, so a context that ends holds no agent
            self._tell_trouble(str(final.get("reason") or ""))
            self._report(
                lambda r=final: self.executor.context_finished(
                    run.lease, Status(r["status"]), r.get("reason"), r.get("variables")
                ),
                patient=True,
            )
        else:  # the agent died without a word: stopped by us (an abort), or lost
            status, reason = (
                (Status.ABORTED, f"aborted ({code})")
                if run.stopping
                else (Status.ERROR, f"{Reason.AGENT_LOST}: its agent exited ({code}) unfinished")
            )
            self._report(lambda: self.executor.context_finished(run.lease, status, reason))
        if run.held is not None:
            shutil.rmtree(run.held, ignore_errors=True)  # its reports are made
        with self._lock:
            self._running.pop(run.lot.context, None)
            self._wakeup.notify()  # a slot is free
        self.bids.poke()  # capacity freed

    def _reap(self, run: Running) -> int:
        """Wait for the agent to end; one that lingers after its last report is killed,
        as it has nothing left to do."""
        try:
            return run.agent.wait(AGENT_EXIT_SECONDS)
        except TimeoutError:
            log.warning("agent of %s lingered after its reports; killed", run.lot.context)
            run.agent.kill()
            return run.agent.wait()

    def _tell_trouble(self, reason: str) -> None:
        kind, _, detail = reason.partition(": ")
        if self.on_trouble is not None and kind in (DISK_FULL, STORE_UNAVAILABLE):
            self.on_trouble(kind, f"an agent's {detail}")

    def _report(self, call: Any, patient: bool = False) -> None:
        """Make a report; `patient`: try again while the PSM's disk is full (or its
        database unreachable), for as long as the lease would last, so that an outcome
        reported once space is back keeps its reason (`disk_full: …`), not `agent_lost`."""
        deadline = time.monotonic() + (self.lease_seconds if patient else 0.0)
        while True:
            try:
                call()
                return
            except (Conflict, NotFound) as exc:
                log.info("report refused: %s", exc)  # a stale lease or an aborted run
                return
            except Exception as exc:  # e.g. the server unreachable for too long: the lease decides
                if trouble(exc) is None or time.monotonic() >= deadline:
                    log.warning("report lost: %s", exc)
                    return
            time.sleep(0.5)

    # -- leases -------------------------------------------------------------------
    def _renew_loop(self) -> None:
        due = 0.0
        # Short ticks: `lease_seconds` may change (a remote learns it when it registers).
        while not self._stopping.wait(min(0.5, max(0.05, self.lease_seconds / 6))):
            if time.monotonic() < due:
                continue
            due = time.monotonic() + self.lease_seconds / 3
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
