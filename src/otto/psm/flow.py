"""How a run moves on: batch by batch, context by context.

Everything here runs inside one writer transaction, so a context's outcome
and every consequence of it (siblings aborted, the batch completed, the next
batch started, the run completed) are committed together.
"""

from __future__ import annotations

import json
import time

from otto.model import BatchMode
from otto.psm.ledger import Cause, move
from otto.psm.states import (
    ABORTING,
    AUCTION_STARTED,
    COMPLETE,
    NOT_RUN,
    OUTCOMES,
    PENDING,
    RUNNING,
    TERMINAL,
    Entity,
)
from otto.psm.store.base import Row, Tx
from otto.status import Status, worst

# What a failing context does to the other contexts of its batch, by mode:
# which siblings are affected ("later" = after it in a Linear batch) and why.
ON_FAILURE: dict[str, tuple[str, str] | None] = {
    BatchMode.LINEAR: ("later", "previous_context_failed"),
    BatchMode.PARALLEL: None,
    BatchMode.FANOUT: ("all", "fanout_sibling_failed"),
}

USER_ABORT = "user_abort"


def contexts_of(tx: Tx, pipeline: str, batch: int) -> list[Row]:
    return tx.all(
        "SELECT * FROM contexts WHERE pipeline = ? AND batch = ? ORDER BY position",
        pipeline,
        batch,
    )


def start_batch(tx: Tx, pipeline: str, idx: int, cause: Cause) -> None:
    """Open the auction of batch `idx`, or complete the run when there is none left."""
    batch = tx.one("SELECT * FROM batches WHERE pipeline = ? AND idx = ?", pipeline, idx)
    if batch is None:
        complete_pipeline(tx, pipeline, cause)
        return
    move(tx, pipeline, Entity.BATCH, str(idx), PENDING, AUCTION_STARTED, cause)
    if not contexts_of(tx, pipeline, idx):
        settle_batch(tx, pipeline, idx, cause)


def finish_context(tx: Tx, ctx: Row, reported: Status, cause: Cause) -> None:
    """A context ended: record it, settle its steps, then let the batch react.

    Its status is the worst of what was reported and what its steps ended with.
    """
    steps = tx.all("SELECT * FROM steps WHERE context = ? ORDER BY position", ctx["uuid"])
    outcome = worst([reported, *(Status(s["state"]) for s in steps if s["state"] in OUTCOMES)])
    move(
        tx,
        ctx["pipeline"],
        Entity.CONTEXT,
        ctx["uuid"],
        ctx["state"],
        outcome.value,
        cause,
        columns={"lease_expires": None, "finished_at": time.time()},
    )
    for step in steps:
        if step["state"] == RUNNING:
            move(
                tx,
                ctx["pipeline"],
                Entity.STEP,
                step["uuid"],
                RUNNING,
                outcome.value,
                cause,
                columns={"finished_at": time.time()},
            )
        elif step["state"] == PENDING:
            move(tx, ctx["pipeline"], Entity.STEP, step["uuid"], PENDING, NOT_RUN, cause)
    if outcome.is_failure:
        _react_to_failure(tx, ctx, cause.actor)
    settle_batch(tx, ctx["pipeline"], ctx["batch"], cause)


def _mode(tx: Tx, pipeline: str, idx: int) -> str:
    row = tx.one("SELECT mode FROM batches WHERE pipeline = ? AND idx = ?", pipeline, idx)
    assert row is not None
    return str(row["mode"])


def _react_to_failure(tx: Tx, ctx: Row, actor: str) -> None:
    rule = ON_FAILURE[_mode(tx, ctx["pipeline"], ctx["batch"])]
    if rule is None:
        return
    scope, reason = rule
    for sibling in contexts_of(tx, ctx["pipeline"], ctx["batch"]):
        if sibling["uuid"] == ctx["uuid"]:
            continue
        if scope == "all" or sibling["position"] > ctx["position"]:
            stop_context(tx, sibling, Cause(actor, reason))


def stop_context(tx: Tx, ctx: Row, cause: Cause) -> None:
    """A Pending context never runs; a Running one is asked to abort."""
    if ctx["state"] == PENDING:
        not_run_context(tx, ctx, cause)
    elif ctx["state"] == RUNNING:
        move(tx, ctx["pipeline"], Entity.CONTEXT, ctx["uuid"], RUNNING, ABORTING, cause)


def not_run_context(tx: Tx, ctx: Row, cause: Cause) -> None:
    move(tx, ctx["pipeline"], Entity.CONTEXT, ctx["uuid"], PENDING, NOT_RUN, cause)
    for step in tx.all("SELECT uuid FROM steps WHERE context = ? ORDER BY position", ctx["uuid"]):
        move(tx, ctx["pipeline"], Entity.STEP, step["uuid"], PENDING, NOT_RUN, cause)


def settle_batch(tx: Tx, pipeline: str, idx: int, cause: Cause) -> None:
    """Complete the batch once every context is terminal, then carry the run on."""
    contexts = contexts_of(tx, pipeline, idx)
    if any(c["state"] not in TERMINAL[Entity.CONTEXT] for c in contexts):
        return
    run = _pipeline(tx, pipeline)
    status = batch_status(contexts, aborted=bool(run["abort_requested"]))
    batch = tx.one("SELECT state FROM batches WHERE pipeline = ? AND idx = ?", pipeline, idx)
    assert batch is not None
    move(tx, pipeline, Entity.BATCH, str(idx), batch["state"], COMPLETE, cause, status.value)
    if status.is_failure or run["abort_requested"]:
        skip_later_batches(tx, pipeline, idx, _skip_cause(run, cause.actor))
        complete_pipeline(tx, pipeline, cause)
    else:
        start_batch(tx, pipeline, idx + 1, cause)


def _skip_cause(run: Row, actor: str) -> Cause:
    """Why later batches will not run: the run was aborted (and why), or a batch failed."""
    if not run["abort_requested"]:
        return Cause(actor, "previous_batch_failed")
    data = json.loads(run["abort_data"]) if run["abort_data"] else None
    return Cause(actor, run["abort_reason"] or USER_ABORT, data)


def batch_status(contexts: list[Row], aborted: bool) -> Status:
    outcomes = [Status(c["state"]) for c in contexts if c["state"] in OUTCOMES]
    if aborted and any(c["state"] == NOT_RUN for c in contexts):
        outcomes.append(Status.ABORTED)
    return worst(outcomes)


def skip_later_batches(tx: Tx, pipeline: str, after: int, cause: Cause) -> None:
    for batch in tx.all(
        "SELECT idx FROM batches WHERE pipeline = ? AND idx > ? AND state = ? ORDER BY idx",
        pipeline,
        after,
        PENDING,
    ):
        move(tx, pipeline, Entity.BATCH, str(batch["idx"]), PENDING, NOT_RUN, cause)
        for ctx in contexts_of(tx, pipeline, batch["idx"]):
            not_run_context(tx, ctx, cause)


def complete_pipeline(tx: Tx, pipeline: str, cause: Cause) -> None:
    run = _pipeline(tx, pipeline)
    batches = tx.all("SELECT state, status FROM batches WHERE pipeline = ?", pipeline)
    statuses = [Status(b["status"]) for b in batches if b["status"]]
    if run["abort_requested"] and (not statuses or any(b["state"] == NOT_RUN for b in batches)):
        statuses.append(Status.ABORTED)
    status = worst(statuses)
    move(tx, pipeline, Entity.PIPELINE, pipeline, run["state"], COMPLETE, cause, status.value)


def _pipeline(tx: Tx, pipeline: str) -> Row:
    """What a run's progress depends on (not its model, which can be large)."""
    row = tx.one(
        "SELECT state, abort_requested, abort_reason, abort_data FROM pipelines WHERE uuid = ?",
        pipeline,
    )
    assert row is not None
    return row


def abort_pipeline(tx: Tx, pipeline: str, cause: Cause) -> None:
    """Stop everything not yet terminal; the run completes once running contexts confirm."""
    tx.run(
        "UPDATE pipelines SET abort_requested = 1, abort_reason = ?, abort_data = ? WHERE uuid = ?",
        cause.reason,
        json.dumps(cause.data) if cause.data else None,
        pipeline,
    )
    live = tx.one(
        "SELECT idx FROM batches WHERE pipeline = ? AND state NOT IN (?, ?, ?) ORDER BY idx",
        pipeline,
        PENDING,
        COMPLETE,
        NOT_RUN,
    )
    if live is None:  # nothing started yet
        skip_later_batches(tx, pipeline, -1, cause)
        complete_pipeline(tx, pipeline, cause)
        return
    for ctx in contexts_of(tx, pipeline, live["idx"]):
        stop_context(tx, ctx, cause)
    settle_batch(tx, pipeline, live["idx"], cause)


RETRYABLE = frozenset({Status.FAILED.value, Status.ERROR.value, Status.ABORTED.value, NOT_RUN})


def retry_pipeline(tx: Tx, pipeline: str, cause: Cause, every: bool = False) -> list[str]:
    """Run the failed, errored, aborted and skipped contexts of a finished run again
    (`every`: all of its contexts).

    What succeeded stays (unless `every`); each retried context gets a new attempt (and
    a new auction). The run resumes at the first batch with anything to redo, and its
    duration counts from now (`retried_at`).
    """
    run = _pipeline(tx, pipeline)
    batches = tx.all("SELECT * FROM batches WHERE pipeline = ? ORDER BY idx", pipeline)
    redo = [
        c
        for b in batches
        for c in contexts_of(tx, pipeline, b["idx"])
        if every or c["state"] in RETRYABLE
    ]
    if not redo:
        return []
    tx.run(
        "UPDATE pipelines SET abort_requested = 0, abort_reason = NULL, abort_data = NULL,"
        " retried_at = ? WHERE uuid = ?",
        time.time(),
        pipeline,
    )
    move(tx, pipeline, Entity.PIPELINE, pipeline, run["state"], RUNNING, cause)
    for ctx in redo:
        move(
            tx,
            pipeline,
            Entity.CONTEXT,
            ctx["uuid"],
            ctx["state"],
            PENDING,
            cause,
            columns={"orchestrator": None, "lease_expires": None, "finished_at": None},
        )
        _reset_steps(tx, pipeline, ctx["uuid"], cause)
    first = min(c["batch"] for c in redo)
    for batch in batches:
        if batch["idx"] >= first:
            move(tx, pipeline, Entity.BATCH, str(batch["idx"]), batch["state"], PENDING, cause)
    start_batch(tx, pipeline, first, cause)
    return [c["uuid"] for c in redo]


def hand_back_context(tx: Tx, ctx: Row, cause: Cause) -> None:
    """A Running context goes back to Pending, unassigned, its steps to run again."""
    pipeline = ctx["pipeline"]
    move(
        tx,
        pipeline,
        Entity.CONTEXT,
        ctx["uuid"],
        RUNNING,
        PENDING,
        cause,
        columns={"orchestrator": None, "lease_expires": None},
    )
    _reset_steps(tx, pipeline, ctx["uuid"], cause)


def _reset_steps(tx: Tx, pipeline: str, context: str, cause: Cause) -> None:
    """Every step of a context that will run again goes back to Pending."""
    for step in tx.all("SELECT uuid, state FROM steps WHERE context = ?", context):
        if step["state"] != PENDING:
            move(
                tx,
                pipeline,
                Entity.STEP,
                step["uuid"],
                step["state"],
                PENDING,
                cause,
                columns={"exit_code": None, "started_at": None, "finished_at": None},
            )
