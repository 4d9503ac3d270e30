"""The SQL the PSM's role modules (`pipelines`, `executor`, `awards`) run, by what it does.

State itself changes only through `otto.psm.ledger`; what is here reads snapshots for
the rules (`run_state`, `batch_of`) and writes the columns no transition covers (awards,
leases, abort requests, idempotency keys).
"""

from __future__ import annotations

import json
from typing import Any

from otto import conditions
from otto.duration import parse_duration
from otto.model import Checkout, Context, Pipeline
from otto.psm.errors import Conflict, NotFound
from otto.psm.records import About, Cause, gate_trigger, trigger_details
from otto.psm.rules import BatchState, ContextState, GateInputs, RunState, StepState
from otto.psm.states import ABORTING, BATCH_AWARDED, PENDING, RUNNING, Entity, Reason
from otto.psm.store.base import Row, Tx

STAGE_TIMEOUT = "timeout"  # the stage property that bounds how long it may run


# -- snapshots ---------------------------------------------------------------------


# A run's states, one row per step read (per context without, per batch without contexts).
_SNAPSHOT = """SELECT p.state, p.abort_requested, p.abort_reason, p.abort_data,
    b.idx, b.mode, b.state AS batch_state, b.status,
    c.uuid AS context, c.position, c.state AS context_state, c.orchestrator, c.gate_condition,
    c.gate_input, c.hook, {steps}
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
_CONTEXT_STEPS = "SELECT uuid, state FROM steps WHERE context = ? ORDER BY position"
# A context's own columns (`_OWN`) and its batch's states, one row per context of the batch.
_OWN = ("pipeline", "batch", "attempt", "lease_epoch", "stage_timeout")
_BATCH_OF = """SELECT me.pipeline, me.batch, me.attempt, me.lease_epoch, me.stage_timeout,
    b.mode, b.state, b.status, c.uuid, c.position, c.state, c.orchestrator
FROM contexts me
JOIN batches b ON b.pipeline = me.pipeline AND b.idx = me.batch
JOIN contexts c ON c.pipeline = me.pipeline AND c.batch = me.batch
WHERE me.uuid = ? ORDER BY c.position"""


def run_state(tx: Tx, uuid: str, steps: bool | str = True, gates: bool | None = None) -> RunState:
    """A pipeline's states for the rules, with every context's steps (`steps=True`), none
    (False), or only those of the context `steps` names; the others' are None (not read).

    What conditions read (`gates`) is read too when asked, or (None) only when the next
    batch to start has a Pending context with a condition: then those contexts' steps
    are held as well, to be skipped with them (a hook batch's too: its hooks decide then)."""
    rows = tx.tuples(_WITH_STEPS[tx.dialect] if steps is True else _WITHOUT_STEPS, uuid)
    assert rows, f"no pipeline {uuid}"
    gated = _gated_next(rows)
    read: dict[str, tuple[StepState, ...]] | None = None
    if steps is not True:
        wanted = [*gated, steps] if isinstance(steps, str) else gated
        read = _steps_of(tx, wanted) if wanted else {}
    batches = _batches(rows, read)
    state, abort_requested, abort_reason, abort_data = rows[0][:4]
    data = json.loads(abort_data) if abort_data else None
    inputs = gate_inputs(tx, uuid) if (gates if gates is not None else bool(gated)) else None
    return RunState(uuid, state, batches, bool(abort_requested), abort_reason, data, inputs)


def _steps_of(tx: Tx, contexts: list[str]) -> dict[str, tuple[StepState, ...]]:
    """The steps of `contexts`, in order, by context."""
    if len(contexts) == 1:
        (only,) = contexts
        return {only: tuple(StepState(*s) for s in tx.tuples(_CONTEXT_STEPS, only))}
    found: dict[str, list[StepState]] = {c: [] for c in contexts}
    marks = ", ".join("?" for _ in contexts)
    query = f"SELECT context, uuid, state FROM steps WHERE context IN ({marks}) ORDER BY position"
    for context, step, state in tx.tuples(query, *contexts):
        found[context].append(StepState(step, state))
    return {c: tuple(s) for c, s in found.items()}


def _gated_next(rows: list[tuple[Any, ...]]) -> list[str]:
    """The Pending contexts with a condition or a hook of the first batch not yet started
    (of snapshot rows: batch index 4, its state 6, context 8, its state 10, condition 12,
    hook 14)."""
    first: int | None = None
    gated: list[str] = []
    for row in rows:
        if first is None and row[6] == PENDING:
            first = row[4]
        if first is not None and row[4] != first:
            break
        if first is None or row[10] != PENDING or not (row[12] or row[14]):
            continue
        if row[8] not in gated:
            gated.append(row[8])
    return gated


# What conditions read of a run, in one query: its row, with each captured variable.
_GATE_INPUTS = """SELECT p.ref, p.event, p.project, p.trigger_data, v.name, v.value
FROM pipelines p LEFT JOIN run_variables v ON v.pipeline = p.uuid WHERE p.uuid = ?"""


def gate_inputs(tx: Tx, pipeline: str) -> GateInputs:
    """What a run's gate conditions read: its trigger, and what its steps captured."""
    rows = tx.tuples(_GATE_INPUTS, pipeline)
    assert rows, f"no pipeline {pipeline}"
    ref, event, project, trigger_data = rows[0][:4]
    details = trigger_details({"trigger_data": trigger_data})
    captured = {name: value for *_, name, value in rows if name is not None}
    return GateInputs(gate_trigger(ref, event, project, details), captured)


def _batches(
    rows: list[tuple[Any, ...]], read: dict[str, tuple[StepState, ...]] | None
) -> tuple[BatchState, ...]:
    """The batches of snapshot rows (ordered by batch, context, step). `read`: the steps
    read apart, by context, the only ones held (None: the rows hold every context's)."""
    batch_of: dict[int, tuple[Any, ...]] = {}
    contexts_of: dict[int, list[tuple[Any, ...]]] = {}
    steps_of: dict[str, list[StepState]] = {}
    for row in rows:
        idx, context = row[4], row[8]
        if idx is None:  # a run without batches (rejected)
            continue
        if idx not in batch_of:
            batch_of[idx] = row[5:8]
            contexts_of[idx] = []
        if context is None:
            continue
        steps = steps_of.get(context)
        if steps is None:
            steps_of[context] = steps = []
            contexts_of[idx].append(row[8:15])
        if row[15] is not None:
            steps.append(StepState(row[15], row[16]))

    def held(context: str) -> tuple[StepState, ...] | None:
        return tuple(steps_of[context]) if read is None else read.get(context)

    return tuple(
        BatchState(idx, *batch_of[idx], tuple(
            ContextState(c, idx, position, state, orchestrator, held(c), condition, gate_input,
                         hook)
            for c, position, state, orchestrator, condition, gate_input, hook in contexts
        ))
        for idx, contexts in contexts_of.items()
    )  # fmt: skip


def batch_of(tx: Tx, context: str) -> tuple[dict[str, Any], BatchState]:
    """A context's own columns (`_OWN`: its pipeline, batch, attempt, lease epoch and
    stage timeout) and its batch's states (not its steps'), in one query: all a claim or
    an award decides on."""
    rows = tx.tuples(_BATCH_OF, context)
    if not rows:
        raise NotFound(f"no context {context}")
    own = dict(zip(_OWN, rows[0][:5], strict=True))
    idx, (mode, batch, status) = own["batch"], rows[0][5:8]
    contexts = tuple(
        ContextState(uuid, idx, position, state, orchestrator, None)
        for *_, uuid, position, state, orchestrator in rows
    )
    return own, BatchState(idx, mode, batch, status, contexts)


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


def stored_condition(context: Context) -> str | None:
    """A context's gate condition as `contexts.gate_condition` keeps it (None: it has
    none): its text, its tree and the values of the stage environment it reads."""
    condition = context.gate.condition if context.gate is not None else None
    if condition is None:
        return None
    # An evaluation reads every variable its expression names: these are the ones.
    _, named = conditions.evaluate(condition.ast, {})
    own = {name.removeprefix("env."): None for name in named if name.startswith("env.")}
    env = {name: context.environment[name] for name in own if name in context.environment}
    return json.dumps({"source": condition.source, "ast": condition.ast, "env": env})


def stored_gate_input(context: Context) -> str | None:
    """A context's approval gates as `contexts.gate_input` keeps them (None: it has none):
    `enter` and `exit`, each its input's message, parameters and timeout."""
    gate = context.gate
    if gate is None or (gate.enter_input is None and gate.exit_input is None):
        return None
    inputs = {"enter": gate.enter_input, "exit": gate.exit_input}
    return json.dumps({k: i.model_dump() for k, i in inputs.items() if i is not None})


def stored_hook(context: Context) -> str | None:
    """A hook context's trigger as `contexts.hook` keeps it (None: not a hook)."""
    return None if context.hook is None else context.hook.model_dump_json()


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
            contexts.append(
                (context.uuid, pipeline.uuid, b, c, context.name, PENDING, seconds,
                 stored_condition(context), stored_gate_input(context), stored_hook(context))
            )  # fmt: skip
            steps += [
                (s.uuid, context.uuid, i, s.symbol, PENDING) for i, s in enumerate(context.steps)
            ]
    try:
        tx.many(
            "INSERT INTO contexts (uuid, pipeline, batch, position, name, state, stage_timeout,"
            " gate_condition, gate_input, hook) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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


def assign(tx: Tx, context: str, orchestrator: str, attempt: int) -> None:
    """Award a context's next attempt, once: the database refuses a second award of the
    same attempt (Conflict) whichever replica's auction makes it."""
    done = tx.run(
        "UPDATE contexts SET orchestrator = ? WHERE uuid = ? AND orchestrator IS NULL"
        " AND state = ? AND attempt = ?",
        orchestrator,
        context,
        PENDING,
        attempt,
    )
    if done != 1:
        raise Conflict(f"context {context} is already awarded", PENDING)


def unassign(tx: Tx, context: str, orchestrator: str) -> None:
    """Take a Pending context back from the orchestrator it was awarded to."""
    tx.run(
        "UPDATE contexts SET orchestrator = NULL WHERE uuid = ? AND orchestrator = ? AND state = ?",
        context,
        orchestrator,
        PENDING,
    )


def unassign_unclaimed(tx: Tx, orchestrator: str) -> int:
    """Take back every award to `orchestrator` not yet claimed; how many."""
    return tx.run(
        "UPDATE contexts SET orchestrator = NULL WHERE state = ? AND orchestrator = ?",
        PENDING,
        orchestrator,
    )


def unclaimed_awards(
    tx: Tx, orchestrator: str | None = None, pipeline: str | None = None, claimable: bool = False
) -> list[Row]:
    """The contexts awarded and not yet claimed (of `orchestrator`, or of any; of one
    `pipeline`, or of all); `claimable`: only those whose batch's auction has ended."""
    sql = (
        "SELECT c.uuid, c.pipeline, c.name, c.orchestrator FROM contexts c"
        " JOIN batches b ON b.pipeline = c.pipeline AND b.idx = c.batch"
        " WHERE c.state = ? AND c.orchestrator IS NOT NULL"
    )
    params: list[Any] = [PENDING]
    for column, value in (("c.orchestrator", orchestrator), ("c.pipeline", pipeline)):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    if claimable:
        sql += f" AND b.state IN ({', '.join('?' for _ in BATCH_AWARDED)})"
        params += sorted(BATCH_AWARDED)
    return tx.all(sql, *params)


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


def auto_retries(tx: Tx, pipeline: str, context: str) -> int:
    """How many times a context was retried automatically since its run was last retried
    by hand (an automatic retry is rare: its transitions are counted, not kept)."""
    row = tx.one(
        "SELECT COUNT(*) AS made FROM transitions WHERE pipeline = ? AND entity = ? AND id = ?"
        " AND reason = ? AND seq > (SELECT COALESCE(MAX(seq), 0) FROM transitions"
        " WHERE pipeline = ? AND entity = ? AND id = ? AND reason = ?)",
        *(pipeline, Entity.CONTEXT.value, context, Reason.AUTO_RETRY.value),
        *(pipeline, Entity.CONTEXT.value, context, Reason.RETRY.value),
    )
    return int(row["made"]) if row is not None else 0


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


def inputs_timed_out(tx: Tx, moment: float) -> list[Row]:
    """The Waiting contexts whose gate's input timeout has passed."""
    return tx.all(
        "SELECT uuid, pipeline FROM contexts WHERE input_deadline IS NOT NULL"
        " AND input_deadline <= ?",
        moment,
    )


# -- work orders -------------------------------------------------------------------


def set_checkout(tx: Tx, pipeline: str, checkout: Checkout) -> None:
    tx.run(
        "UPDATE pipelines SET checkout_url = ?, checkout_sha = ?, checkout_branch = ?"
        " WHERE uuid = ?",
        checkout.url, checkout.sha, checkout.branch, pipeline,
    )  # fmt: skip


def work_order_row(tx: Tx, pipeline: str) -> Row | None:
    """What a claim's work order tells of its run: the checkout (`checkout`) and the
    trigger its steps' variables come from (`otto.psm.records.run_variables`)."""
    return tx.one(
        "SELECT checkout_url, checkout_sha, checkout_branch, project, event, trigger_data,"
        " ref, sha FROM pipelines WHERE uuid = ?",
        pipeline,
    )


def checkout(row: Row | None) -> Checkout | None:
    """The commit a run's workspaces start from, if it has one (of `work_order_row`)."""
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


def capture_variables(tx: Tx, pipeline: str, context: str, variables: dict[str, str]) -> None:
    """Record what a context's steps captured; a name reported again takes the new value."""
    tx.many(
        "INSERT INTO run_variables (pipeline, name, value, context) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (pipeline, name) DO UPDATE SET value = excluded.value,"
        " context = excluded.context",
        [(pipeline, name, value, context) for name, value in sorted(variables.items())],
    )


def captured_variables(tx: Tx, pipeline: str) -> dict[str, str]:
    """The variables a run's steps captured so far, by name."""
    rows = tx.tuples("SELECT name, value FROM run_variables WHERE pipeline = ?", pipeline)
    return {name: value for name, value in rows}
