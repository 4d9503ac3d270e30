"""The SQL the PSM's role modules (`pipelines`, `executor`, `awards`) run, by what it does.

State itself changes only through `otto.psm.ledger`; what is here reads snapshots for
the rules (`run_state`) and writes the columns no transition covers (awards, leases,
abort requests, idempotency keys).
"""

from __future__ import annotations

import json
from typing import Any

from otto.duration import parse_duration
from otto.model import Checkout, Pipeline
from otto.psm.errors import Conflict
from otto.psm.records import About, Cause
from otto.psm.rules import BatchState, ContextState, RunState, StepState
from otto.psm.states import ABORTING, PENDING, RUNNING
from otto.psm.store.base import Row, Tx

STAGE_TIMEOUT = "timeout"  # the stage property that bounds how long it may run


# -- snapshots ---------------------------------------------------------------------


# A run's states, one row per step (per context without steps, per batch without contexts).
_SNAPSHOT = """SELECT p.state, p.abort_requested, p.abort_reason, p.abort_data,
    b.idx, b.mode, b.state AS batch_state, b.status,
    c.uuid AS context, c.position, c.state AS context_state, c.orchestrator, {steps}
FROM pipelines p
LEFT JOIN batches b ON b.pipeline = p.uuid
LEFT JOIN contexts c ON c.pipeline = b.pipeline AND c.batch = b.idx {join}
WHERE p.uuid = ? ORDER BY b.idx, c.position{order}"""
_WITHOUT_STEPS = _SNAPSHOT.format(steps="NULL AS step, NULL AS step_state", join="", order="")
# Each context's steps through the steps_context index. On PostgreSQL the subquery is fenced
# (OFFSET 0): flattened, a planner without statistics (a young database) may prefer a hash
# join that reads every step, and the prepared statement would keep that plan.
_WITH_STEPS = {
    dialect: _SNAPSHOT.format(
        steps="s.uuid AS step, s.state AS step_state", join=join, order=", s.position"
    )
    for dialect, join in {
        "sqlite": "LEFT JOIN steps s ON s.context = c.uuid",
        "postgres": "LEFT JOIN LATERAL (SELECT uuid, state, position FROM steps"
        " WHERE context = c.uuid OFFSET 0) s ON TRUE",
    }.items()
}


def run_state(tx: Tx, uuid: str, steps: bool = True) -> RunState:
    """A pipeline's states for the rules (`steps=False`: without its steps'), in one query."""
    rows = tx.tuples(_WITH_STEPS[tx.dialect] if steps else _WITHOUT_STEPS, uuid)
    assert rows, f"no pipeline {uuid}"
    batch_of: dict[int, tuple[str, str, str | None]] = {}
    contexts_of: dict[int, dict[str, tuple[int, str, str | None]]] = {}
    steps_of: dict[str, list[StepState]] = {}
    for row in rows:
        idx, mode, batch, status, context, position, state, orchestrator, step, step_state = row[4:]
        if idx is None:  # a run without batches (rejected)
            continue
        if idx not in batch_of:
            batch_of[idx] = (mode, batch, status)
            contexts_of[idx] = {}
        if context is not None:
            contexts_of[idx][context] = (position, state, orchestrator)
            if step is not None:
                steps_of.setdefault(context, []).append(StepState(step, step_state))
    batches = tuple(
        BatchState(
            idx, mode, batch, status,
            tuple(
                ContextState(context, idx, *c, tuple(steps_of.get(context, ())))
                for context, c in contexts_of[idx].items()
            ),
        )
        for idx, (mode, batch, status) in batch_of.items()
    )  # fmt: skip
    state, abort_requested, abort_reason, abort_data = rows[0][:4]
    data = json.loads(abort_data) if abort_data else None
    return RunState(uuid, state, batches, bool(abort_requested), abort_reason, data)


# -- pipelines ---------------------------------------------------------------------


def run_of_commit(tx: Tx, repo: str, sha: str) -> str | None:
    row = tx.one("SELECT pipeline FROM commits WHERE repo = ? AND sha = ?", repo, sha)
    return None if row is None else str(row["pipeline"])


def idempotency_key(tx: Tx, key: str) -> Row | None:
    return tx.one(
        "SELECT pipeline, duplicate, fingerprint FROM idempotency_keys WHERE idem_key = ?", key
    )


def remember_idempotency_key(
    tx: Tx, key: str, fingerprint: str, pipeline: str, duplicate: bool, now: float, ttl: float
) -> None:
    """Record a key's outcome, forgetting keys older than `ttl` seconds."""
    tx.run("DELETE FROM idempotency_keys WHERE created_at < ?", now - ttl)
    tx.run(
        "INSERT INTO idempotency_keys (idem_key, fingerprint, pipeline, duplicate, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        key,
        fingerprint,
        pipeline,
        int(duplicate),
        now,
    )


def insert_pipeline(
    tx: Tx, pipeline: Pipeline, repo: str | None, ref: str | None, sha: str | None,
    about: About, now: float,
) -> None:  # fmt: skip
    """Store a pipeline's model and a Pending row for it and each batch, context and step."""
    if tx.one("SELECT uuid FROM pipelines WHERE uuid = ?", pipeline.uuid):
        raise Conflict(f"pipeline {pipeline.uuid} already exists")
    tx.run(
        "INSERT INTO pipelines (uuid, model, state, repo, ref, sha, project, trigger, message,"
        " event, trigger_data, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        pipeline.uuid, pipeline.to_json(), PENDING, repo, ref, sha, about.project,
        about.trigger, about.message, about.event,
        json.dumps(about.details) if about.details else None, now, now,
    )  # fmt: skip
    if repo and sha:
        tx.run(
            "INSERT INTO commits (repo, sha, pipeline) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            repo,
            sha,
            pipeline.uuid,
        )
    tx.many(
        "INSERT INTO batches (pipeline, idx, mode, state) VALUES (?, ?, ?, ?)",
        [(pipeline.uuid, i, b.mode.value, PENDING) for i, b in enumerate(pipeline.batches)],
    )
    contexts, steps = [], []
    for b, batch in enumerate(pipeline.batches):
        for c, context in enumerate(batch.contexts):
            timeout = context.properties.get(STAGE_TIMEOUT)
            seconds = parse_duration(timeout) if timeout is not None else None
            contexts.append((context.uuid, pipeline.uuid, b, c, context.name, PENDING, seconds))
            steps += [
                (s.uuid, context.uuid, i, s.symbol, PENDING) for i, s in enumerate(context.steps)
            ]
    try:
        tx.many(
            "INSERT INTO contexts (uuid, pipeline, batch, position, name, state, stage_timeout)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            contexts,
        )
        tx.many(
            "INSERT INTO steps (uuid, context, position, symbol, state) VALUES (?, ?, ?, ?, ?)",
            steps,
        )
    except Exception as exc:  # a uuid clash with another stored pipeline
        if "UNIQUE" in str(exc).upper() or "duplicate key" in str(exc):
            raise Conflict("a context or step uuid of this model is already in use") from None
        raise


def record_rejection(tx: Tx, pipeline: str, reason: str, message: str) -> None:
    tx.run(
        "UPDATE pipelines SET rejected_reason = ?, rejected_data = ? WHERE uuid = ?",
        reason,
        json.dumps({"message": message}),
        pipeline,
    )


def request_abort(tx: Tx, pipeline: str, cause: Cause) -> None:
    tx.run(
        "UPDATE pipelines SET abort_requested = 1, abort_reason = ?, abort_data = ? WHERE uuid = ?",
        None if cause.reason is None else str(cause.reason),
        json.dumps(cause.data) if cause.data else None,
        pipeline,
    )


def restart(tx: Tx, pipeline: str, now: float) -> None:
    """A retried run is no longer aborted, and its duration counts from `now`."""
    tx.run(
        "UPDATE pipelines SET abort_requested = 0, abort_reason = NULL, abort_data = NULL,"
        " retried_at = ? WHERE uuid = ?",
        now,
        pipeline,
    )


# -- awards ------------------------------------------------------------------------


def assign(tx: Tx, context: str, orchestrator: str) -> None:
    tx.run("UPDATE contexts SET orchestrator = ? WHERE uuid = ?", orchestrator, context)


def unassign(tx: Tx, context: str, orchestrator: str) -> None:
    """Take a Pending context back from the orchestrator it was awarded to."""
    tx.run(
        "UPDATE contexts SET orchestrator = NULL WHERE uuid = ? AND orchestrator = ? AND state = ?",
        context,
        orchestrator,
        PENDING,
    )


def unassign_unclaimed(tx: Tx) -> int:
    return tx.run(
        "UPDATE contexts SET orchestrator = NULL WHERE state = ? AND orchestrator IS NOT NULL",
        PENDING,
    )


# -- leases and deadlines ----------------------------------------------------------


def renew_lease(tx: Tx, context: str, expires: float) -> None:
    tx.run("UPDATE contexts SET lease_expires = ? WHERE uuid = ?", expires, context)


def step_leased(context: str, epoch: int) -> tuple[str, tuple[Any, ...]]:
    """A `ledger.move` guard: a step moves only while the lease it is reported under is
    its context's current one."""
    return (
        "context IN (SELECT uuid FROM contexts WHERE uuid = ? AND lease_epoch = ?"
        " AND state IN (?, ?))",
        (context, epoch, RUNNING, ABORTING),
    )


def earliest_lease_and_deadline(tx: Tx) -> tuple[float | None, float | None]:
    row = tx.one(
        "SELECT MIN(lease_expires) AS due, MIN(deadline) AS deadline FROM contexts"
        " WHERE lease_expires IS NOT NULL"
    )
    return (None, None) if row is None else (row["due"], row["deadline"])


def leases_expired(tx: Tx, moment: float) -> list[Row]:
    return tx.all(
        "SELECT uuid, pipeline FROM contexts WHERE lease_expires IS NOT NULL"
        " AND lease_expires <= ? AND state IN (?, ?)",
        moment,
        RUNNING,
        ABORTING,
    )


def deadlines_passed(tx: Tx, moment: float) -> list[Row]:
    return tx.all(
        "SELECT uuid, pipeline FROM contexts WHERE deadline IS NOT NULL AND deadline <= ?"
        " AND state = ?",
        moment,
        RUNNING,
    )


# -- work orders -------------------------------------------------------------------


def set_checkout(tx: Tx, pipeline: str, checkout: Checkout) -> None:
    tx.run(
        "UPDATE pipelines SET checkout_url = ?, checkout_sha = ?, checkout_branch = ?"
        " WHERE uuid = ?",
        checkout.url, checkout.sha, checkout.branch, pipeline,
    )  # fmt: skip


def checkout(tx: Tx, pipeline: str) -> Checkout | None:
    """The commit a run's workspaces start from, if it has one."""
    row = tx.one(
        "SELECT checkout_url, checkout_sha, checkout_branch FROM pipelines WHERE uuid = ?",
        pipeline,
    )
    if row is None or not row["checkout_url"]:
        return None
    return Checkout(url=row["checkout_url"], sha=row["checkout_sha"], branch=row["checkout_branch"])


def open_batches(tx: Tx, live: frozenset[str]) -> list[Row]:
    """Every context of each batch in a state of `live` that has a Pending context no
    orchestrator holds, with its batch's mode and state, in order."""
    states = ", ".join("?" for _ in live)
    return tx.all(
        # `waiting` reads the partial index `contexts_open` (its condition, literally).
        "WITH waiting AS (SELECT DISTINCT pipeline, batch FROM contexts"
        f" WHERE state = '{PENDING}' AND orchestrator IS NULL)"
        " SELECT c.uuid, c.pipeline, c.batch, c.position, c.name, c.state, c.orchestrator,"
        " b.mode, b.state AS batch_state FROM waiting w"
        " JOIN batches b ON b.pipeline = w.pipeline AND b.idx = w.batch"
        " JOIN contexts c ON c.pipeline = w.pipeline AND c.batch = w.batch"
        f" WHERE b.state IN ({states}) ORDER BY c.pipeline, c.batch, c.position",
        *sorted(live),
    )
