"""How a run moves on, as pure functions: a snapshot of a run's states in, moves out.

Batch by batch, context by context: what starts when a batch opens (a context whose gate
condition is false is Skipped then, never auctioned, counted in no status), what a failing
context does to its batch (by mode), when a batch and the run complete, what an
abort, a retry, a hand-back, a lost lease or a stage past its deadline lead to.

Hook contexts (`rollback`, `notify`: `otto.model.Hook`) fill a run's trailing batches.
Once the rest of the run has ended (by success, failure or abort) those batches start in
turn; a hook whose outcome did not come about (`hook_triggered`) is Skipped then
(`not_triggered`), the others run as any context; their outcomes count in no status
but their own batch's, and an abort while they run stops them and the hooks after. Nothing
here reads a database or a clock (`now` is a parameter): the store applies the moves
in one transaction through `ledger.apply`, each one a guarded `ledger.move`, so a
context's outcome and every consequence of it are committed together.

A snapshot holds what its decision needs, no more (every event is one on the writer):
a claim or an award decides on its batch alone; a context that ends, on the run with
only its own steps, unless its ending reaches other contexts' steps (a failure stopping
siblings, later batches skipped): then `NarrowSnapshot` says to decide again with all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from otto import conditions
from otto.model import BatchMode, HookOn
from otto.psm.errors import Conflict
from otto.psm.records import Cause
from otto.psm.states import (
    ABORTING,
    AUCTION_COMPLETED,
    AUCTION_STARTED,
    BATCH_AWARDED,
    BATCH_LIVE,
    COMPLETE,
    EXECUTING,
    NOT_RUN,
    OUTCOMES,
    PENDING,
    PROVISIONING,
    RUNNING,
    SKIPPED,
    TERMINAL,
    WAITING,
    Entity,
    Reason,
)
from otto.status import Status, worst

# Past a stage's deadline its agent stops the running step (SIGTERM, SIGKILL after its
# kill grace of 10 s) and reports; only one that has not reported this long after is
# ended by the PSM itself.
DEADLINE_GRACE = 15.0

# What a failing context does to the other contexts of its batch, by mode:
# which siblings are affected ("later" = after it in a Linear batch) and why.
ON_FAILURE: dict[str, tuple[str, Reason] | None] = {
    BatchMode.LINEAR: ("later", Reason.PREVIOUS_CONTEXT_FAILED),
    BatchMode.PARALLEL: None,
    BatchMode.FANOUT: ("all", Reason.FANOUT_SIBLING_FAILED),
}

# The approval gates of a context (`Gate.enter_input`, `Gate.exit_input`), as stored.
ENTER, EXIT = "enter", "exit"
# The columns a context leaving Waiting clears.
_NOT_WAITING = {"waiting_for": None, "input_deadline": None}

# What a retry runs again (unless asked to run everything again).
RETRYABLE = frozenset({Status.FAILED.value, Status.ERROR.value, Status.ABORTED.value, NOT_RUN})


# -- the snapshot -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepState:
    uuid: str
    state: str


@dataclass(frozen=True, slots=True)
class ContextState:
    uuid: str
    batch: int
    position: int
    state: str
    orchestrator: str | None = None
    steps: tuple[StepState, ...] | None = ()  # in order; None: not in this snapshot
    # Its gate's condition as stored (`contexts.gate_condition`: JSON of its `source`,
    # `ast` and the stage environment it reads, `env`), decoded only when evaluated.
    condition: str | None = None
    # Its approval gates as stored (`contexts.gate_input`: JSON of its `enter` and `exit`
    # inputs), decoded only when one may be reached.
    gate_input: str | None = None
    # What it reacts to, for a hook context (`contexts.hook`: JSON of `on` and `of`).
    hook: str | None = None


@dataclass(frozen=True, slots=True)
class BatchState:
    idx: int
    mode: str
    state: str
    status: str | None = None
    contexts: tuple[ContextState, ...] = ()  # in order

    @property
    def hooks(self) -> bool:
        """A batch of hook contexts (they are never mixed with others)."""
        return any(c.hook is not None for c in self.contexts)


@dataclass(frozen=True, slots=True)
class GateInputs:
    """What a run's conditions read: its trigger and the variables its steps captured."""

    trigger: conditions.Trigger
    captured: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunState:
    """A pipeline's states: what its progress depends on (not its model). `gates`: what
    conditions read, held only when a batch about to start has a context with one."""

    uuid: str
    state: str
    batches: tuple[BatchState, ...] = ()  # by index
    abort_requested: bool = False
    abort_reason: str | None = None
    abort_data: dict[str, Any] | None = None
    gates: GateInputs | None = None

    def context(self, uuid: str) -> ContextState:
        for batch in self.batches:
            for ctx in batch.contexts:
                if ctx.uuid == uuid:
                    return ctx
        raise KeyError(uuid)


class NarrowSnapshot(Exception):
    """A decision needs steps its snapshot left out (a failure or an abort reaches other
    contexts), or a condition's inputs: decide again over a snapshot with every step."""


class Move(NamedTuple):  # immutable like the snapshots, and cheaper to make: many per event
    """One state change to make: `entity` `ident` from `current` to `wanted`."""

    entity: Entity
    ident: str
    current: str
    wanted: str
    cause: Cause
    status: str | None = None  # a batch's or pipeline's outcome
    data: dict[str, Any] | None = None  # instead of the cause's
    columns: dict[str, Any] | None = None  # further columns of the entity's row to set


# -- what each event leads to -------------------------------------------------------


def start(run: RunState, cause: Cause, now: float) -> list[Move]:
    """A new run starts: Running, its first batch's auction opened."""
    plan = _Plan(run, now)
    plan.move(Entity.PIPELINE, run.uuid, PENDING, RUNNING, cause)
    plan.start_batch(0, cause)
    return plan.moves


def reject(run: RunState, reason: str, message: str, actor: str) -> list[Move]:
    """A run that cannot start ends at once: Complete, Error, its reason on record."""
    cause = Cause(actor, reason)
    data = {"message": message}
    return [Move(Entity.PIPELINE, run.uuid, PENDING, COMPLETE, cause, Status.ERROR.value, data)]


def finish_context(
    run: RunState, context: str, reported: Status, cause: Cause, now: float
) -> list[Move]:
    """A context ended: its outcome (the worst of what was reported and what its steps
    ended with), its steps settled, then what its batch and the run do next."""
    plan = _Plan(run, now)
    plan.finish_context(run.context(context), reported, cause)
    return plan.moves


def fail_context(
    run: RunState, context: str, cause: Cause, now: float, policy: RetryPolicy | None = None
) -> list[Move]:
    """An infrastructure failure (e.g. provisioning): Error; it may also have been the
    last context its batch's auction waited for. A Running context whose `policy`
    answers the failure's kind (`provision_failed: …`) runs again instead, at once."""
    ctx = run.context(context)
    kind = (cause.reason or "").partition(":")[0]
    if ctx.state == RUNNING and policy is not None and policy.answers(kind):
        return auto_retry(run, ctx, cause, kind, now)
    plan = _Plan(run, now)
    plan.finish_context(ctx, Status.ERROR, cause)
    plan.close_auction(ctx.batch, cause.actor)
    return plan.moves


def close_auction(batch: BatchState, actor: str) -> list[Move]:
    """When no context of a batch in auction that may start now (`claimable`) waits for an
    orchestrator: provision."""
    return _auction_closed(batch, batch.state, lambda ctx: ctx.state, actor)


def award(batch: BatchState, context: str, orchestrator: str, actor: str) -> list[Move]:
    """A Pending context of a live batch, not yet awarded, goes to `orchestrator` (Conflict
    otherwise: once awarded, a context is never awarded again until it is given back,
    whoever auctions it); the moves are the auction's end, when that was the last award
    it waited for."""
    ctx = _in(batch, context)
    if ctx.state != PENDING or batch.state not in BATCH_LIVE:
        raise Conflict(f"context {context} is not open for award", ctx.state)
    if ctx.orchestrator is not None:
        raise Conflict(f"context {context} is already awarded to {ctx.orchestrator}", PENDING)
    awarded = replace(ctx, orchestrator=orchestrator)
    contexts = tuple(awarded if c is ctx else c for c in batch.contexts)
    return close_auction(replace(batch, contexts=contexts), actor)


def abort(run: RunState, cause: Cause, now: float) -> list[Move]:
    """Stop everything not yet terminal; the run completes once running contexts confirm.

    The first live batch's Pending contexts never run and its Running ones are asked to
    abort; later batches never run."""
    run = replace(run, abort_requested=True, abort_reason=cause.reason, abort_data=cause.data)
    plan = _Plan(run, now)
    ended = (PENDING, COMPLETE, NOT_RUN)
    live = next((b for b in run.batches if b.state not in ended), None)
    if live is None:  # nothing started yet
        plan.skip_later_batches(-1, cause, hooks=True)
        plan.complete_pipeline(cause)
        return plan.moves
    for ctx in live.contexts:
        plan.stop_context(ctx.uuid, cause)
    if live.hooks:  # the run had ended: its hooks stop, and those after them never run
        plan.skip_later_batches(live.idx, cause, hooks=True)
    plan.settle_batch(live.idx, cause)
    return plan.moves


def retry(run: RunState, cause: Cause, now: float, every: bool = False) -> list[Move]:
    """Run the failed, errored, aborted and skipped contexts of a finished run again
    (`every`: all of its contexts); nothing when there is nothing to redo.

    What succeeded stays (unless `every`); each retried context gets a new attempt (and a
    new auction). The run resumes at the first batch with anything to redo; its hooks
    all wait to decide again once it has ended."""
    redo = retried(run, every)
    if not redo:
        return []
    plan = _Plan(replace(run, abort_requested=False, abort_reason=None, abort_data=None), now)
    plan.move(Entity.PIPELINE, run.uuid, run.state, RUNNING, cause)
    hooks = [c.uuid for b in run.batches if b.hooks for c in b.contexts if c.state != PENDING]
    for uuid in [*redo, *hooks]:
        ctx = run.context(uuid)
        columns = {"orchestrator": None, "lease_expires": None, "finished_at": None}
        plan.move(Entity.CONTEXT, uuid, ctx.state, PENDING, cause, columns=columns)
        plan.reset_steps(ctx, cause)
    first = min(run.context(uuid).batch for uuid in redo)
    for batch in run.batches[first:]:
        plan.move(Entity.BATCH, str(batch.idx), batch.state, PENDING, cause)
    plan.start_batch(first, cause)
    return plan.moves


def retried(run: RunState, every: bool = False) -> list[str]:
    """The contexts a retry runs again, in order (hooks aside: they follow what it does)."""
    return [
        c.uuid
        for b in run.batches
        if not b.hooks
        for c in b.contexts
        if every or c.state in RETRYABLE
    ]  # fmt: skip


def hand_back(run: RunState, context: str, cause: Cause) -> list[Move]:
    """A Running context goes back to Pending, unassigned, its steps to run again."""
    ctx = run.context(context)
    if ctx.state != RUNNING:
        raise Conflict(f"context {context} is {ctx.state}", ctx.state)
    plan = _Plan(run, 0.0)
    columns = {"orchestrator": None, "lease_expires": None}
    plan.move(Entity.CONTEXT, context, RUNNING, PENDING, cause, columns=columns)
    plan.reset_steps(ctx, cause)
    return plan.moves


def claim(
    batch: BatchState, context: str, orchestrator: str, cause: Cause, data: dict[str, Any],
    columns: dict[str, Any],
) -> list[Move]:  # fmt: skip
    """Start an attempt of an awarded context of `batch` (Conflict when it may not start
    now): a Linear batch's context waits for the one before it to end."""
    ctx = _in(batch, context)
    if ctx.state != PENDING:
        raise Conflict(f"context {context} is {ctx.state}", ctx.state)
    if ctx.orchestrator != orchestrator or batch.state not in BATCH_AWARDED:
        raise Conflict(f"context {context} is not awarded to {orchestrator}", ctx.state)
    if ctx not in claimable(batch):
        raise Conflict(f"context {context} waits for the one before it", PENDING)
    moves = []
    if batch.state == PROVISIONING:
        moves.append(Move(Entity.BATCH, str(batch.idx), PROVISIONING, EXECUTING, cause))
    moves.append(Move(Entity.CONTEXT, context, PENDING, RUNNING, cause, data=data, columns=columns))
    return moves


def _in(batch: BatchState, context: str) -> ContextState:
    return next(c for c in batch.contexts if c.uuid == context)


def claimable(batch: BatchState) -> list[ContextState]:
    """The Pending contexts of a batch that may start now, all that an auction offers: a
    Linear batch's next unfinished one (once the one before it has ended), every Pending
    one of a Parallel or Fanout batch."""
    return _claimable(batch, lambda ctx: ctx.state)


def _claimable(batch: BatchState, state_of: Callable[[ContextState], str]) -> list[ContextState]:
    if batch.mode != BatchMode.LINEAR:
        return [c for c in batch.contexts if state_of(c) == PENDING]
    unfinished = (c for c in batch.contexts if state_of(c) not in TERMINAL[Entity.CONTEXT])
    following = next(unfinished, None)
    return [following] if following is not None and state_of(following) == PENDING else []


def answer(
    run: RunState, context: str, approved: bool, waiting_for: str, cause: Cause, now: float
) -> list[Move]:
    """A person answered a Waiting context's input (`waiting_for`: its `enter` or `exit`
    gate): approved, it goes on (Pending, to be auctioned; or Success); rejected, it
    ends Failed, and its batch's mode decides what follows."""
    ctx = run.context(context)
    if ctx.state != WAITING:
        raise Conflict(f"context {context} is {ctx.state}, not {WAITING}", ctx.state)
    plan = _Plan(run, now)
    if not approved:
        plan.end_waiting(ctx, Status.FAILED, cause)
    elif waiting_for == ENTER:
        plan.move(Entity.CONTEXT, ctx.uuid, WAITING, PENDING, cause, columns=_NOT_WAITING)
    else:
        plan.end_waiting(ctx, Status.SUCCESS, cause)
    return plan.moves


def input_timed_out(run: RunState, context: str, now: float) -> list[Move]:
    """Nobody answered a Waiting context's input before its gate's timeout: Aborted
    (`input_timeout`), unless it is no longer waiting."""
    ctx = run.context(context)
    if ctx.state != WAITING:
        return []
    plan = _Plan(run, now)
    plan.end_waiting(ctx, Status.ABORTED, Cause("psm", Reason.INPUT_TIMEOUT))
    return plan.moves


def expire(
    run: RunState, context: str, why: Reason, now: float, policy: RetryPolicy | None = None
) -> list[Move]:
    """A context whose lease ran out (`agent_lost`) or whose stage is past its deadline
    and grace (`timeout`) ends, unless it already has.

    A lost context ends Error, or Aborted when it was being aborted (losing it is not a
    new failure: a Fanout batch is Failed by its cause, not Error by the sibling it was
    stopping); a late one ends Failed. A lost one whose `policy` answers `agent_lost`
    runs again at once, as a new attempt."""
    ctx = run.context(context)
    if ctx.state not in (RUNNING, ABORTING):
        return []
    if why == Reason.TIMEOUT:
        outcome = Status.FAILED
    else:
        outcome = Status.ABORTED if ctx.state == ABORTING else Status.ERROR
    if outcome == Status.ERROR and policy is not None and policy.answers(why):
        return auto_retry(run, ctx, Cause("psm", why), why, now)
    return finish_context(run, context, outcome, Cause("psm", why), now)


# Automatic retries a context may have, at most, until a person retries its run.
AUTO_RETRIES = 1


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The failures a context runs again after (its stage's `retry_on`), and how many
    automatic retries it has had."""

    causes: frozenset[str] = frozenset()
    made: int = 0

    def answers(self, cause: str) -> bool:
        return cause in self.causes and self.made < AUTO_RETRIES


def auto_retry(run: RunState, ctx: ContextState, cause: Cause, kind: str, now: float) -> list[Move]:
    """A Running context's attempt lost to the infrastructure ends Error (`cause`, its
    running step too) and the context runs again at once as a new attempt (`auto_retry`,
    naming `kind`): Pending, unassigned (auctioned again), every step to run again. Its
    batch goes on meanwhile: nothing failed that its mode reacts to."""
    plan = _Plan(run, now)
    error = Status.ERROR.value
    plan.move(Entity.CONTEXT, ctx.uuid, RUNNING, error, cause,
              columns={"lease_expires": None, "finished_at": now})  # fmt: skip
    for step in plan.steps(ctx):
        if step.state == RUNNING:
            plan.move(Entity.STEP, step.uuid, RUNNING, error, cause, columns={"finished_at": now})
    again = Cause(cause.actor, Reason.AUTO_RETRY, {"cause": kind})
    columns = {"orchestrator": None, "finished_at": None}
    plan.move(Entity.CONTEXT, ctx.uuid, error, PENDING, again, columns=columns)
    columns = {"exit_code": None, "started_at": None, "finished_at": None}
    for step in plan.steps(ctx):
        state = plan.state(Entity.STEP, step.uuid, step.state)
        if state != PENDING:
            plan.move(Entity.STEP, step.uuid, state, PENDING, again, columns=columns)
    return plan.moves


def hook_triggered(on: str, outcome: str | None) -> bool:
    """Whether a hook reacting `on` runs after the outcome it reacts to (None: a stage
    that had none, skipped or never run: no hook of it runs)."""
    if outcome is None:
        return False
    if on in (HookOn.ROLLBACK, HookOn.FAILURE):
        return outcome in (Status.FAILED, Status.ERROR)
    if on == HookOn.SUCCESS:
        return outcome in (Status.SUCCESS, Status.UNSTABLE)
    return True  # complete


def hook_outcome(run: RunState, context: str | None) -> str | None:
    """The outcome a hook of `context` (None: of the run) reacts to, once its batch started."""
    return _Plan(run, 0.0).outcome_of(context)


def lease_terms(
    now: float, lease_seconds: float, stage_timeout: float | None, default_timeout: float
) -> tuple[float, float]:
    """When a lease taken `now` expires, and when the stage's time is up."""
    return now + lease_seconds, now + (stage_timeout or default_timeout)


def next_wakeup(lease_due: float | None, deadline: float | None) -> float | None:
    """When expiry next has work: the earliest lease's end or deadline (plus its grace)."""
    if lease_due is None:
        return None
    if deadline is None:
        return float(lease_due)
    return min(float(lease_due), deadline + DEADLINE_GRACE)


def batch_status(contexts: list[str], aborted: bool) -> Status:
    """A batch's outcome from its contexts' end states: the worst; Aborted too when the
    run was aborted and some never ran."""
    outcomes = [Status(state) for state in contexts if state in OUTCOMES]
    if aborted and NOT_RUN in contexts:
        outcomes.append(Status.ABORTED)
    return worst(outcomes)


# -- the moves of one event, each seeing the ones before it -------------------------


class _Plan:
    """The moves decided so far over a snapshot, and the states they leave."""

    def __init__(self, run: RunState, now: float) -> None:
        self.run = run
        self.now = now
        self.moves: list[Move] = []
        self._states: dict[tuple[Entity, str], str] = {}
        self._batch_status: dict[int, str | None] = {}

    def state(self, entity: Entity, ident: str, initial: str) -> str:
        return self._states.get((entity, ident), initial)

    def move(
        self, entity: Entity, ident: str, current: str, wanted: str, cause: Cause,
        status: str | None = None, data: dict[str, Any] | None = None,
        columns: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        self.moves.append(Move(entity, ident, current, wanted, cause, status, data, columns))
        self._states[entity, ident] = wanted
        if entity is Entity.BATCH:
            self._batch_status[int(ident)] = status

    def ctx_state(self, ctx: ContextState) -> str:
        return self.state(Entity.CONTEXT, ctx.uuid, ctx.state)

    def batch_state(self, batch: BatchState) -> str:
        return self.state(Entity.BATCH, str(batch.idx), batch.state)

    def start_batch(self, idx: int, cause: Cause) -> None:
        """Open the auction of batch `idx`, or complete the run when there is none left."""
        if idx >= len(self.run.batches):
            self.complete_pipeline(cause)
            return
        self.move(Entity.BATCH, str(idx), PENDING, AUCTION_STARTED, cause)
        batch = self.run.batches[idx]
        if batch.hooks:
            skipped = self.skip_untriggered(batch, cause.actor)
        else:
            skipped = self.skip_unmet(batch, cause.actor)
        self.hold_at_enter_gates(batch, cause.actor)
        if skipped or not batch.contexts:
            self.settle_batch(idx, cause)

    def hold_at_enter_gates(self, batch: BatchState, actor: str) -> None:
        """Each Pending context of a starting batch with an enter input waits for it (after
        its condition: a skipped context never waits)."""
        for ctx in batch.contexts:
            if ctx.gate_input is None or self.ctx_state(ctx) != PENDING:
                continue
            gate = json.loads(ctx.gate_input).get(ENTER)
            if gate is not None:
                self.hold(ctx, PENDING, ENTER, gate, Cause(actor, Reason.INPUT))

    def hold(
        self, ctx: ContextState, current: str, which: str, gate: dict[str, Any], cause: Cause
    ) -> None:
        """`ctx` waits at its `which` gate's input, until its timeout if it has one."""
        data = {"gate": which, "message": gate["message"],
                "parameters": gate.get("parameters") or [], **(cause.data or {})}  # fmt: skip
        timeout = gate.get("timeout")
        columns = {"waiting_for": which, "input_deadline": self.now + timeout if timeout else None}
        if current == RUNNING:
            columns["lease_expires"] = None
        self.move(Entity.CONTEXT, ctx.uuid, current, WAITING, Cause(cause.actor, Reason.INPUT),
                  data=data, columns=columns)  # fmt: skip

    def end_waiting(self, ctx: ContextState, outcome: Status, cause: Cause) -> None:
        """A Waiting context ends: what follows, as for any context that ends."""
        self.leave_waiting(ctx, outcome, cause)
        if outcome.is_failure:
            self.react_to_failure(ctx, cause.actor)
        self.settle_batch(ctx.batch, cause)

    def leave_waiting(self, ctx: ContextState, outcome: Status, cause: Cause) -> None:
        columns = {**_NOT_WAITING, "finished_at": self.now}
        self.move(Entity.CONTEXT, ctx.uuid, WAITING, outcome.value, cause, columns=columns)
        for step in self.steps(ctx):
            if self.state(Entity.STEP, step.uuid, step.state) == PENDING:
                self.move(Entity.STEP, step.uuid, PENDING, NOT_RUN, cause)

    def skip_unmet(self, batch: BatchState, actor: str) -> bool:
        """Skip each Pending context of a starting batch whose condition is false, its
        steps NotRun; whether any was."""
        skipped = False
        for ctx in batch.contexts:
            if ctx.condition is None or self.ctx_state(ctx) != PENDING:
                continue
            held, data = self.evaluate(ctx)
            if not held:
                self.skip(ctx, Cause(actor, Reason.CONDITION_FALSE, data))
                skipped = True
        return skipped

    def skip_untriggered(self, batch: BatchState, actor: str) -> bool:
        """Skip each Pending hook of a starting hook batch whose outcome did not come
        about; whether any was."""
        skipped = False
        for ctx in batch.contexts:
            if ctx.hook is None or self.ctx_state(ctx) != PENDING:
                continue
            hook = json.loads(ctx.hook)
            outcome = self.outcome_of(hook.get("of"))
            if not hook_triggered(hook["on"], outcome):
                data = {"on": hook["on"], "of": hook.get("of"), "outcome": outcome}
                self.skip(ctx, Cause(actor, Reason.NOT_TRIGGERED, data))
                skipped = True
        return skipped

    def skip(self, ctx: ContextState, cause: Cause) -> None:
        self.move(Entity.CONTEXT, ctx.uuid, PENDING, SKIPPED, cause)
        for step in self.steps(ctx):
            if self.state(Entity.STEP, step.uuid, step.state) == PENDING:
                self.move(Entity.STEP, step.uuid, PENDING, NOT_RUN, cause)

    def outcome_of(self, context: str | None) -> str | None:
        """What a hook reacts to came to: a stage's outcome (None: it had none, skipped or
        never run), or the run's (`context` None) as it will be recorded."""
        if context is None:
            return self.run_outcome().value
        state = self.ctx_state(self.run.context(context))
        return state if state in OUTCOMES else None

    def evaluate(self, ctx: ContextState) -> tuple[bool, dict[str, Any]]:
        """Whether a context's condition holds, and what to record: its text, and the
        values it saw."""
        if self.run.gates is None:
            raise NarrowSnapshot(ctx.uuid)
        gate = json.loads(ctx.condition or "{}")
        inputs = self.run.gates
        variables = inputs.trigger.variables(gate.get("env") or {}, inputs.captured)
        held, seen = conditions.evaluate(gate["ast"], variables)
        return held, {"condition": gate["source"], "seen": seen}

    def steps(self, ctx: ContextState) -> tuple[StepState, ...]:
        if ctx.steps is None:
            raise NarrowSnapshot(ctx.uuid)
        return ctx.steps

    def finish_context(self, ctx: ContextState, reported: Status, cause: Cause) -> None:
        steps = [(s.uuid, self.state(Entity.STEP, s.uuid, s.state)) for s in self.steps(ctx)]
        outcome = worst([reported, *(Status(state) for _, state in steps if state in OUTCOMES)])
        exit_gate = self.exit_gate(ctx) if outcome == Status.SUCCESS else None
        if exit_gate is not None:
            held = Cause(cause.actor, cause.reason, {"outcome": outcome.value})
            self.hold(ctx, RUNNING, EXIT, exit_gate, held)
        else:
            columns = {"lease_expires": None, "finished_at": self.now}
            self.move(Entity.CONTEXT, ctx.uuid, self.ctx_state(ctx), outcome.value, cause,
                      columns=columns)  # fmt: skip
        for uuid, state in steps:
            if state == RUNNING:
                self.move(Entity.STEP, uuid, RUNNING, outcome.value, cause,
                          columns={"finished_at": self.now})  # fmt: skip
            elif state == PENDING:
                self.move(Entity.STEP, uuid, PENDING, NOT_RUN, cause)
        if outcome.is_failure:
            self.react_to_failure(ctx, cause.actor)
        self.settle_batch(ctx.batch, cause)

    def exit_gate(self, ctx: ContextState) -> dict[str, Any] | None:
        """The exit input a Running context that succeeded waits at, if it has one."""
        if ctx.gate_input is None or self.ctx_state(ctx) != RUNNING:
            return None
        gate: dict[str, Any] | None = json.loads(ctx.gate_input).get(EXIT)
        return gate

    def react_to_failure(self, ctx: ContextState, actor: str) -> None:
        batch = self.run.batches[ctx.batch]
        rule = ON_FAILURE[batch.mode]
        if rule is None:
            return
        scope, reason = rule
        for sibling in batch.contexts:
            if sibling.uuid != ctx.uuid and (scope == "all" or sibling.position > ctx.position):
                self.stop_context(sibling.uuid, Cause(actor, reason))

    def stop_context(self, uuid: str, cause: Cause) -> None:
        """A Pending context never runs; a Waiting one ends Aborted; a Running one is
        asked to abort."""
        ctx = self.run.context(uuid)
        state = self.ctx_state(ctx)
        if state == PENDING:
            self.not_run_context(ctx, cause)
        elif state == WAITING:
            self.leave_waiting(ctx, Status.ABORTED, cause)
        elif state == RUNNING:
            self.move(Entity.CONTEXT, uuid, RUNNING, ABORTING, cause)

    def not_run_context(self, ctx: ContextState, cause: Cause) -> None:
        self.move(Entity.CONTEXT, ctx.uuid, PENDING, NOT_RUN, cause)
        for step in self.steps(ctx):
            self.move(Entity.STEP, step.uuid, PENDING, NOT_RUN, cause)

    def settle_batch(self, idx: int, cause: Cause) -> None:
        """Complete the batch once every context is terminal, then carry the run on."""
        batch = self.run.batches[idx]
        states = [self.ctx_state(c) for c in batch.contexts]
        if any(s not in TERMINAL[Entity.CONTEXT] for s in states):
            return
        status = batch_status(states, aborted=self.run.abort_requested)
        self.move(Entity.BATCH, str(idx), self.batch_state(batch), COMPLETE, cause, status.value)
        if not batch.hooks and (status.is_failure or self.run.abort_requested):
            self.skip_later_batches(idx, self.skip_cause(cause.actor))
        self.start_next_batch(idx, cause)

    def start_next_batch(self, after: int, cause: Cause) -> None:
        """Start the first batch after `after` still to run, or complete the run."""
        for batch in self.run.batches[after + 1 :]:
            if self.batch_state(batch) == PENDING:
                self.start_batch(batch.idx, cause)
                return
        self.complete_pipeline(cause)

    def skip_cause(self, actor: str) -> Cause:
        """Why later batches will not run: the run was aborted (and why), or a batch failed."""
        if not self.run.abort_requested:
            return Cause(actor, Reason.PREVIOUS_BATCH_FAILED)
        return Cause(actor, self.run.abort_reason or Reason.USER_ABORT, self.run.abort_data)

    def skip_later_batches(self, after: int, cause: Cause, hooks: bool = False) -> None:
        """The batches after `after` never run: the run's own, and (`hooks`) its hooks."""
        for batch in self.run.batches[after + 1 :]:
            if self.batch_state(batch) != PENDING or (batch.hooks and not hooks):
                continue
            self.move(Entity.BATCH, str(batch.idx), PENDING, NOT_RUN, cause)
            for ctx in batch.contexts:
                self.not_run_context(ctx, cause)

    def complete_pipeline(self, cause: Cause) -> None:
        state = self.state(Entity.PIPELINE, self.run.uuid, self.run.state)
        outcome = self.run_outcome().value
        self.move(Entity.PIPELINE, self.run.uuid, state, COMPLETE, cause, outcome)

    def run_outcome(self) -> Status:
        """The run's outcome from its own batches' (hooks aside): the worst; Aborted too
        when it was aborted before all of them ran."""
        batches = [b for b in self.run.batches if not b.hooks]
        ended = [self._batch_status.get(b.idx, b.status) for b in batches]
        statuses = [Status(s) for s in ended if s]
        skipped = any(self.batch_state(b) == NOT_RUN for b in batches)
        if self.run.abort_requested and (not statuses or skipped):
            statuses.append(Status.ABORTED)
        return worst(statuses)

    def reset_steps(self, ctx: ContextState, cause: Cause) -> None:
        """Every step of a context that will run again goes back to Pending."""
        columns = {"exit_code": None, "started_at": None, "finished_at": None}
        for step in self.steps(ctx):
            if step.state != PENDING:
                self.move(Entity.STEP, step.uuid, step.state, PENDING, cause, columns=columns)

    def close_auction(self, idx: int, actor: str) -> None:
        batch = self.run.batches[idx]
        for m in _auction_closed(batch, self.batch_state(batch), self.ctx_state, actor):
            self.move(m.entity, m.ident, m.current, m.wanted, m.cause, data=m.data)


def _auction_closed(
    batch: BatchState, state: str, state_of: Callable[[ContextState], str], actor: str
) -> list[Move]:
    """The batch (in `state`, its contexts' in `state_of`) is provisioned once what its
    auction offers, what may start now (a Linear batch's first context), is all awarded."""
    if state != AUCTION_STARTED:
        return []
    if any(c.orchestrator is None for c in _claimable(batch, state_of)):
        return []
    cause = Cause(actor, Reason.AWARDED)
    awards = {c.uuid: c.orchestrator for c in batch.contexts}
    ident = str(batch.idx)
    return [
        Move(Entity.BATCH, ident, AUCTION_STARTED, AUCTION_COMPLETED, cause,
             data={"awards": awards}),
        Move(Entity.BATCH, ident, AUCTION_COMPLETED, PROVISIONING, cause),
    ]  # fmt: skip
