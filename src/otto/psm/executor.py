"""What executors (orchestrators) call: claim, renew, step and context reports,
hand-back, infrastructure failures; and the expiry of leases and stage deadlines.

Every report is made under a lease whose epoch fences older attempts. Each call is one
piece of work on the store's writer: the rules (`otto.psm.rules`) decide the moves,
`ledger.apply` makes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from otto.model import Context, Hook, retry_causes
from otto.psm import rules, views
from otto.psm.errors import Conflict, StaleLease
from otto.psm.ledger import apply, move
from otto.psm.records import (
    CREDENTIAL_DENIED,
    NO_GRANT,
    Cause,
    CredentialSource,
    Grant,
    Lease,
    WorkOrder,
    run_variables,
    trigger_details,
)
from otto.psm.states import ABORTING, BATCH_LIVE, PENDING, RUNNING, TERMINAL, Entity, Reason
from otto.psm.store import queries
from otto.psm.store.base import Row, Store, Tx
from otto.status import Status

DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_STAGE_TIMEOUT = 3600.0  # seconds a stage without a `timeout` may run
PROVISION_FAILED = "provision_failed"  # how an executor's reason says provisioning failed
# The reported failures a stage's `retry_on` may answer: provisioning failed, or the agent
# died without its final report (`agent_lost: …`, as a lost lease is).
RETRYABLE_REPORTS = (PROVISION_FAILED, f"{Reason.AGENT_LOST}:")


class Execution:
    """The PSM's calls for executors (a part of `PipelineStateMachine`)."""

    store: Store
    lease_seconds: float
    default_stage_timeout: float

    # The credential store (`otto.credentials.Credentials`), when the server keeps one.
    credentials: CredentialSource | None = None

    def context_model(self, pipeline: str, context: str) -> Context: ...

    def claim_work(
        self, context: str, orchestrator: str, isolation: str | None = None
    ) -> WorkOrder:
        """`claim`, answered with the whole work order: the lease, the context's model, the
        commit its workspace starts from, its steps' run variables and whether it is
        untrusted (a fork's pull request). Starting a context costs this one call. What
        earlier contexts' steps captured reaches its steps as `VAR_<name>`; which attempt of
        the context this is, as `OTTO_ATTEMPT`."""
        claimed = self._claim(context, orchestrator, isolation, with_run=True)
        lease, (run, captured, grant, attempt) = claimed
        model = self.context_model(lease.pipeline, context)
        if run is None:
            return WorkOrder(lease, model)
        untrusted = trigger_details(run).get("fork") is True
        variables = run_variables(run) | {f"VAR_{k}": v for k, v in captured.items()}
        variables["OTTO_ATTEMPT"] = str(attempt)
        if model.hook is not None:
            variables |= self._hook_variables(lease.pipeline, model.hook)
        checkout = queries.checkout(run)
        return WorkOrder(lease, model, checkout, variables, untrusted, grant.values, grant.denied)

    def _hook_variables(self, pipeline: str, hook: Hook) -> dict[str, str]:
        """What a hook's steps are told: what it reacts to (`OTTO_HOOK`: rollback, failure,
        success, complete), the outcome it saw (`OTTO_HOOK_OUTCOME`) and of which stage
        (`OTTO_HOOK_STAGE`; empty for the run's)."""
        run = self.store.read(lambda tx: queries.run_state(tx, pipeline, steps=False))
        stage = self.context_model(pipeline, hook.of).name if hook.of is not None else ""
        outcome = rules.hook_outcome(run, hook.of) or ""
        return {"OTTO_HOOK": hook.on.value, "OTTO_HOOK_OUTCOME": outcome, "OTTO_HOOK_STAGE": stage}

    def _grant(self, tx: Tx, pipeline: str, context: str, run: Row | None) -> Grant:
        """The credentials a context's stage asks for, for its run's project, read in its
        claim's transaction (`otto.credentials`); none asked, none given."""
        names = self.context_model(pipeline, context).credentials if run is not None else []
        if not names:
            return NO_GRANT
        if self.credentials is None:
            return Grant(denied=f"{CREDENTIAL_DENIED}: this server keeps no credentials"
                         " (it has no API token)")  # fmt: skip
        untrusted = trigger_details(run).get("fork") is True
        return self.credentials.grant(tx, run["project"], names, untrusted)

    def claim(self, context: str, orchestrator: str, isolation: str | None = None) -> Lease:
        """Start an attempt of an awarded context; the lease fences every later report.
        `isolation`: how its steps run (`bubblewrap`, `none`, `podman`), on record."""
        return self._claim(context, orchestrator, isolation)[0]

    def _claim(
        self, context: str, orchestrator: str, isolation: str | None, with_run: bool = False
    ) -> tuple[Lease, tuple[Row | None, dict[str, str], Grant, int]]:
        def work(tx: Tx) -> tuple[Lease, tuple[Row | None, dict[str, str], Grant, int]]:
            ctx, batch = queries.batch_of(tx, context)
            run = queries.work_order_row(tx, ctx["pipeline"]) if with_run else None
            grant = self._grant(tx, ctx["pipeline"], context, run)
            now = time.time()
            expires, deadline = rules.lease_terms(
                now, self.lease_seconds, ctx["stage_timeout"], self.default_stage_timeout
            )
            attempt, epoch = ctx["attempt"] + 1, ctx["lease_epoch"] + 1
            data = {
                "orchestrator": orchestrator,
                "attempt": attempt,
                **({"isolation": isolation} if isolation else {}),
                **grant.record(),
            }
            columns = {
                "attempt": attempt,
                "lease_epoch": epoch,
                "lease_expires": expires,
                "deadline": deadline,
                "started_at": now,
            }
            cause = Cause(orchestrator, Reason.CLAIMED)
            moves = rules.claim(batch, context, orchestrator, cause, data, columns)
            apply(tx, ctx["pipeline"], moves)
            lease = Lease(ctx["pipeline"], context, orchestrator, epoch, expires, deadline=deadline)
            if not with_run:
                return lease, (None, {}, grant, attempt)
            return lease, (run, queries.captured_variables(tx, ctx["pipeline"]), grant, attempt)

        return self.store.write(work)

    def lease(self, context: str, orchestrator: str, epoch: int) -> Lease:
        """The lease a remote executor names by (context, epoch), for its reports."""
        row = self.store.read(lambda tx: views.context_row(tx, context))
        return Lease(row["pipeline"], context, orchestrator, epoch, row["lease_expires"] or 0.0)

    def renew(self, lease: Lease) -> Lease:
        """Extend a lease; the answer says whether the PSM wants the context aborted."""

        def work(tx: Tx) -> Lease:
            ctx = _leased(tx, lease)
            expires = time.time() + self.lease_seconds
            queries.renew_lease(tx, lease.context, expires)
            return Lease(
                lease.pipeline,
                lease.context,
                lease.orchestrator,
                lease.epoch,
                expires,
                aborting=ctx["state"] == ABORTING,
                deadline=ctx["deadline"],
            )

        return self.store.write(work)

    def step_started(self, lease: Lease, step: str) -> None:
        def work(tx: Tx) -> None:
            columns = {"started_at": time.time()}
            _move_step(
                tx, lease, step, PENDING, RUNNING, Cause(lease.orchestrator), columns=columns
            )

        self.store.write(work)

    def step_finished(
        self,
        lease: Lease,
        step: str,
        exit_code: int | None = None,
        status: Status | None = None,
        reason: str | None = None,
    ) -> Status:
        """Record a step's outcome: an explicit status, or the one its exit code maps to."""
        if status is None:
            if exit_code is None:
                raise ValueError("a finished step needs an exit code or a status")
            status = Status.from_exit_code(exit_code)
        outcome = status

        def work(tx: Tx) -> Status:
            _move_step(
                tx,
                lease,
                step,
                RUNNING,
                outcome.value,
                Cause(lease.orchestrator, reason),
                data={"exit_code": exit_code},
                columns={"exit_code": exit_code, "finished_at": time.time()},
            )
            return outcome

        return self.store.write(work)

    def context_finished(
        self,
        lease: Lease,
        status: Status,
        reason: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> None:
        """Record a context's outcome, and the variables its steps captured (later
        contexts' steps see them)."""

        def work(tx: Tx) -> None:
            pipeline = _leased(tx, lease)["pipeline"]
            if variables:
                queries.capture_variables(tx, pipeline, lease.context, dict(variables))
            cause = Cause(lease.orchestrator, reason)
            now = time.time()
            decide: Callable[[rules.RunState], list[rules.Move]]
            if status == Status.ERROR and (reason or "").startswith(RETRYABLE_REPORTS):
                policy = self.retry_policy(tx, pipeline, lease.context)
                decide = partial(rules.fail_context, context=lease.context, cause=cause, now=now,
                                 policy=policy)  # fmt: skip
            else:
                decide = partial(rules.finish_context, context=lease.context, reported=status,
                                 cause=cause, now=now)  # fmt: skip
            apply(tx, pipeline, ending(tx, pipeline, lease.context, decide))

        self.store.write(work)

    def hand_back(self, lease: Lease) -> None:
        """Give an unfinished context back (its executor shuts down): Pending, re-auctioned."""

        def work(tx: Tx) -> None:
            pipeline = _leased(tx, lease)["pipeline"]
            cause = Cause(lease.orchestrator, Reason.HANDED_BACK)
            moves = rules.hand_back(queries.run_state(tx, pipeline), lease.context, cause)
            apply(tx, pipeline, moves)

        self.store.write(work)

    def fail_context(self, context: str, reason: str, actor: str) -> None:
        """Infrastructure failure before or during a run (e.g. provisioning failed): Error."""

        def work(tx: Tx) -> None:
            ctx = views.context_row(tx, context)
            if ctx["state"] in TERMINAL[Entity.CONTEXT]:
                raise Conflict(f"context {context} is already {ctx['state']}", ctx["state"])
            if views.batch_row(tx, ctx["pipeline"], ctx["batch"])["state"] not in BATCH_LIVE:
                raise Conflict(f"context {context}: its batch has not started", ctx["state"])
            cause, now = Cause(actor, reason), time.time()
            policy = self.retry_policy(tx, ctx["pipeline"], context)
            moves = ending(
                tx, ctx["pipeline"], context,
                lambda run: rules.fail_context(run, context, cause, now, policy),
            )  # fmt: skip
            apply(tx, ctx["pipeline"], moves)

        self.store.write(work)

    def retry_policy(self, tx: Tx, pipeline: str, context: str) -> rules.RetryPolicy:
        """A context's automatic retries: the failures its stage's `retry_on` names (by
        default `agent_lost` and `provision_failed`), and how many it has had since its
        run was last retried by hand."""
        causes = retry_causes(self.context_model(pipeline, context).properties)
        if not causes:
            return rules.RetryPolicy()
        return rules.RetryPolicy(causes, queries.auto_retries(tx, pipeline, context))

    # -- deadlines ---------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When `expire_leases` next has work: a lease's end, or a running stage's deadline
        (plus `DEADLINE_GRACE`); None when no context runs."""
        due, deadline = self.store.read(queries.earliest_lease_and_deadline)
        return rules.next_wakeup(due, deadline)

    def expire_leases(self, now: float | None = None) -> int:
        """Contexts whose lease ran out lost their agent: Error, reason `agent_lost` (then
        Pending again, `auto_retry`, as their stage's `retry_on` asks: `retry_policy`).

        One already being aborted ends Aborted: losing it is not a new failure (a Fanout
        batch is Failed by its cause, not Error by the sibling it was stopping).

        A running context still there `DEADLINE_GRACE` after its stage's deadline (its
        agent, which stops it at the deadline, did not report) ends Failed, reason
        `timeout`: its running step too, and its steps not run are NotRun. Its agent is
        stopped when its next lease renewal is refused.

        A context Waiting past its gate's input timeout ends Aborted, `input_timeout`."""
        moment = time.time() if now is None else now

        def work(tx: Tx) -> int:
            lost = queries.leases_expired(tx, moment)
            late = queries.deadlines_passed(tx, moment - rules.DEADLINE_GRACE)
            expired = expire_inputs(tx, moment)
            for ctx, why in [
                *((c, Reason.AGENT_LOST) for c in lost),
                *((c, Reason.TIMEOUT) for c in late),
            ]:
                lost_agent = why == Reason.AGENT_LOST
                policy = self.retry_policy(tx, ctx["pipeline"], ctx["uuid"]) if lost_agent else None
                # A fresh snapshot: an earlier expiry in this loop may have moved it.
                moves = ending(
                    tx, ctx["pipeline"], ctx["uuid"],
                    lambda run: rules.expire(run, ctx["uuid"], why, moment, policy),  # noqa: B023
                )  # fmt: skip
                apply(tx, ctx["pipeline"], moves)
                expired += bool(moves)
            return expired

        return self.store.write(work)


def expire_inputs(tx: Tx, moment: float) -> int:
    """Waiting contexts past their gate's timeout end Aborted (`input_timeout`); how many."""
    expired = 0
    for ctx in queries.inputs_timed_out(tx, moment):
        moves = ending(
            tx, ctx["pipeline"], ctx["uuid"],
            lambda run: rules.input_timed_out(run, ctx["uuid"], moment),  # noqa: B023
        )  # fmt: skip
        apply(tx, ctx["pipeline"], moves)
        expired += bool(moves)
    return expired


def ending(
    tx: Tx, pipeline: str, context: str, decide: Callable[[rules.RunState], list[rules.Move]]
) -> list[rules.Move]:
    """The moves of a context that ends, decided over a snapshot with only its steps (all
    that an ending which reaches no other context needs), else over every step."""
    try:
        return decide(queries.run_state(tx, pipeline, steps=context))
    except rules.NarrowSnapshot:
        return decide(queries.run_state(tx, pipeline))


def _leased(tx: Tx, lease: Lease) -> Row:
    ctx = views.context_row(tx, lease.context)
    if ctx["state"] not in (RUNNING, ABORTING):
        raise Conflict(f"context {lease.context} is {ctx['state']}", ctx["state"])
    if ctx["lease_epoch"] != lease.epoch:
        raise StaleLease(
            f"lease epoch {lease.epoch} of context {lease.context} is stale (current "
            f"{ctx['lease_epoch']})",
            ctx["state"],
        )
    return ctx


def _move_step(
    tx: Tx, lease: Lease, step: str, current: str, wanted: str, cause: Cause, **extra: Any
) -> None:
    """The usual case in one guarded update; when it does not apply, say exactly why."""
    guard = queries.step_leased(lease.context, lease.epoch)
    try:
        move(tx, lease.pipeline, Entity.STEP, step, current, wanted, cause, guard=guard, **extra)
    except Conflict:
        _leased(tx, lease)
        row = views.step_row(tx, lease.context, step)
        move(tx, lease.pipeline, Entity.STEP, step, row["state"], wanted, cause, **extra)
