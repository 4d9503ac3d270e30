"""Test kit for the PSM: model builders, a synthetic executor, and invariant checks.

Importable from the tests of this folder (pytest puts it on sys.path) and by
the crash-test child process (which runs from this folder).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from otto.model import Batch, BatchMode, Context, Pipeline, Step
from otto.psm import Conflict, IllegalTransition, Lease, NotFound, PipelineStateMachine
from otto.psm.states import (
    ALLOWED,
    BATCH_LIVE,
    BY_REASON,
    COMPLETE,
    NOT_RUN,
    OUTCOMES,
    SKIPPED,
    TERMINAL,
    Entity,
)
from otto.status import Status, worst

REFUSED = (Conflict, NotFound, IllegalTransition)  # a refused request changes nothing
Replicas = tuple[PipelineStateMachine, PipelineStateMachine]  # two servers on one database
ORCH = "orch-1"

# -- models ----------------------------------------------------------------------


def make_pipeline(*batches: tuple[str | BatchMode, Sequence[int]], **properties: str) -> Pipeline:
    """`make_pipeline(("Linear", [2, 1]), ("Fanout", [0]))`: per batch, steps per context;
    `properties`: every context's further stage properties (`retry_on=""`)."""
    model = Pipeline(batches=[])
    for b, (mode, contexts) in enumerate(batches):
        batch = Batch(mode=BatchMode(mode), contexts=[])
        for c, nsteps in enumerate(contexts):
            ctx = Context(properties={"name": f"b{b}c{c}", **properties})
            ctx.steps = [
                Step(context=ctx.uuid, symbol="sh", parameters=[f"step {s}"]) for s in range(nsteps)
            ]
            batch.contexts.append(ctx)
        model.batches.append(batch)
    return model


def contexts(
    psm: PipelineStateMachine, uuid: str, batch: int | None = None
) -> list[dict[str, Any]]:
    """The contexts of a pipeline (or of one batch) as `psm.get` shows them, in order."""
    view = psm.get(uuid)
    return [
        c for b in view["batches"] if batch is None or b["index"] == batch for c in b["contexts"]
    ]


def state_of(psm: PipelineStateMachine, uuid: str) -> dict[str, Any]:
    """Every state of one pipeline: {pipeline, batches: [(state, status)], contexts, steps}."""
    view = psm.get(uuid)
    return {
        "pipeline": (view["state"], view["status"]),
        "batches": [(b["state"], b["status"]) for b in view["batches"]],
        "contexts": {c["uuid"]: c["state"] for b in view["batches"] for c in b["contexts"]},
        "steps": {
            s["uuid"]: s["state"]
            for b in view["batches"]
            for c in b["contexts"]
            for s in c["steps"]
        },
    }


def context_row(psm: PipelineStateMachine, ctx: str) -> dict[str, Any]:
    return dict(psm.store.read(lambda tx: tx.one("SELECT * FROM contexts WHERE uuid = ?", ctx)))


def lease_of(psm: PipelineStateMachine, ctx: str) -> Lease:
    """The current lease of a context, rebuilt from the store (as a restarted executor would)."""
    row = context_row(psm, ctx)
    return Lease(
        row["pipeline"], ctx, row["orchestrator"], row["lease_epoch"], row["lease_expires"] or 0.0
    )


def all_transitions(psm: PipelineStateMachine) -> list[dict[str, Any]]:
    rows = psm.store.read(lambda tx: tx.all("SELECT * FROM transitions ORDER BY seq"))
    return [dict(r) for r in rows]


def last_seq(psm: PipelineStateMachine) -> int:
    row = psm.store.read(lambda tx: tx.one("SELECT COALESCE(MAX(seq), 0) AS s FROM transitions"))
    return int(row["s"])


# -- a synthetic executor ---------------------------------------------------------


def award_all(psm: PipelineStateMachine, uuid: str, orchestrator: str = ORCH) -> list[str]:
    """Award every unawarded Pending context of the pipeline's live batch, also those not
    offered yet (a Linear batch's later ones): the claim rule must hold them back."""
    awarded = []
    for batch in psm.get(uuid)["batches"]:
        if batch["state"] not in BATCH_LIVE:
            continue
        for ctx in batch["contexts"]:
            if ctx["state"] == "Pending" and ctx["orchestrator"] is None:
                psm.award(ctx["uuid"], orchestrator)
                awarded.append(ctx["uuid"])
    return awarded


def run_steps(
    psm: PipelineStateMachine, lease: Lease, steps: Iterable[str], codes: Iterable[int]
) -> list[Status]:
    return [
        psm.step_started(lease, step) or psm.step_finished(lease, step, exit_code=code)
        for step, code in zip(steps, codes, strict=False)
    ]


def run_context(
    psm: PipelineStateMachine,
    ctx: dict[str, Any],
    codes: Sequence[int] | None = None,
    orchestrator: str = ORCH,
) -> Status:
    """Claim a context, run its steps with `codes` (default all 0), report the worst."""
    lease = psm.claim(ctx["uuid"], orchestrator)
    steps = [s["uuid"] for s in ctx["steps"]]
    statuses = run_steps(psm, lease, steps, codes if codes is not None else [0] * len(steps))
    outcome = worst(statuses)
    psm.context_finished(lease, outcome)
    return outcome


def drive(
    psm: PipelineStateMachine,
    uuid: str,
    code: Callable[[dict[str, Any]], int | Status] = lambda step: 0,
    orchestrator: str = ORCH,
    max_rounds: int = 200,
) -> dict[str, Any]:
    """Keep executing whatever can run until the pipeline is Complete; return its view.

    A context the PSM is aborting reports Aborted; a running one reports its
    remaining steps with `code(step)` and then the worst of its step statuses.
    """
    for _ in range(max_rounds):
        view = psm.get(uuid)
        if view["state"] == COMPLETE:
            return view
        award_all(psm, uuid, orchestrator)
        view = psm.get(uuid)
        live = [b for b in view["batches"] if b["state"] in BATCH_LIVE]
        assert len(live) == 1, f"a running pipeline has one live batch: {view['batches']}"
        for ctx in live[0]["contexts"]:
            if ctx["state"] == "Pending" and ctx["orchestrator"]:
                try:
                    psm.claim(ctx["uuid"], ctx["orchestrator"])
                except Conflict:
                    continue  # a Linear context waiting for the one before it
                finish(psm, ctx["uuid"], code)
                break
            if ctx["state"] in ("Running", "Aborting"):
                finish(psm, ctx["uuid"], code)
                break
    raise AssertionError(f"pipeline {uuid} did not complete: {psm.get(uuid)}")


def finish(
    psm: PipelineStateMachine,
    ctx: str,
    code: Callable[[dict[str, Any]], int | Status] = lambda s: 0,
) -> Status:
    """Finish a Running/Aborting context under its current lease; `code(step)`: a step's
    exit code, or the status it says (`Status.UNSTABLE`: a step says so explicitly)."""
    lease = lease_of(psm, ctx)
    row = context_row(psm, ctx)
    if row["state"] == "Aborting":
        psm.context_finished(lease, Status.ABORTED)
        return Status.ABORTED
    steps = psm.store.read(
        lambda tx: tx.all("SELECT * FROM steps WHERE context = ? ORDER BY position", ctx)
    )
    statuses = [Status(s["state"]) for s in steps if s["state"] in OUTCOMES]
    for step in steps:
        if step["state"] in ("Pending", "Running"):
            if step["state"] == "Pending":
                psm.step_started(lease, step["uuid"])
            outcome = code(step)
            if isinstance(outcome, Status):
                statuses.append(psm.step_finished(lease, step["uuid"], 0, status=outcome))
            else:
                statuses.append(psm.step_finished(lease, step["uuid"], exit_code=outcome))
    outcome = worst(statuses)
    psm.context_finished(lease, outcome)
    return outcome


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


# -- invariants -------------------------------------------------------------------


def check_log(psm: PipelineStateMachine) -> list[dict[str, Any]]:
    """The whole log: seq 1..N without gap or duplicate; every transition in the table (or a
    move only its reason may make: `retry`, `auto_retry`, `handed_back`) and chained (its
    `from` is the entity's previous `to`); replaying it gives the stored states, and
    `psm.replay` finds each run consistent.
    """
    log = all_transitions(psm)
    assert [t["seq"] for t in log] == list(range(1, len(log) + 1)), "seq must be gap-free"
    replayed: dict[tuple[str, str, str], str] = {}
    for t in log:
        key = (t["pipeline"], t["entity"], t["id"])
        assert t["actor"], f"transition without actor: {t}"
        if t["from_state"] is None:
            assert t["entity"] == "pipeline" and t["to_state"] == "Pending", t
            assert key not in replayed, f"pipeline created twice: {t}"
        else:
            entity = Entity(t["entity"])
            allowed = ALLOWED[entity][t["from_state"]]
            if t["reason"] in BY_REASON:  # the ways out of a terminal state
                moves = BY_REASON[t["reason"]][entity]
                allowed = allowed | moves.get(t["from_state"], frozenset())
            assert t["to_state"] in allowed, f"not in the table: {t}"
            assert replayed.get(key, "Pending") == t["from_state"], f"broken chain: {t}"
        replayed[key] = t["to_state"]
        if t["to_state"] in OUTCOMES:
            assert t["status"] == t["to_state"], t
        if t["to_state"] == COMPLETE:
            assert t["status"] in OUTCOMES, t

    def stored(tx: Any) -> dict[tuple[str, str, str], str]:
        out = {}
        for r in tx.all("SELECT uuid, state FROM pipelines"):
            out[(r["uuid"], "pipeline", r["uuid"])] = r["state"]
        for r in tx.all("SELECT pipeline, idx, state FROM batches"):
            out[(r["pipeline"], "batch", str(r["idx"]))] = r["state"]
        for r in tx.all("SELECT pipeline, uuid, state FROM contexts"):
            out[(r["pipeline"], "context", r["uuid"])] = r["state"]
        for r in tx.all(
            "SELECT c.pipeline, s.uuid, s.state FROM steps s JOIN contexts c ON c.uuid = s.context"
        ):
            out[(r["pipeline"], "step", r["uuid"])] = r["state"]
        return out

    for key, state in psm.store.read(stored).items():
        assert replayed.get(key, "Pending") == state, f"{key}: stored {state}, log says {key}"
    for pipeline in {t["pipeline"] for t in log}:
        verdict = psm.replay(pipeline, page=7)  # pages that end mid-run
        assert verdict.consistent, verdict.differences
    return log


def expected_pipeline_status(view: dict[str, Any]) -> Status:
    """flow.complete_pipeline's rule: the worst status of its batches (hook batches aside);
    a user-aborted run that skipped batches (or had none with a status) adds Aborted."""
    own = [b for b in view["batches"] if not b.get("hooks")]
    statuses = [Status(b["status"]) for b in own if b["status"]]
    if view["abort_requested"] and (not statuses or any(b["state"] == NOT_RUN for b in own)):
        statuses.append(Status.ABORTED)
    return worst(statuses)


def check_pipeline(psm: PipelineStateMachine, uuid: str) -> dict[str, Any]:
    """Structural invariants of one pipeline's states; returns its view."""
    view = psm.get(uuid)
    ctx_terminal = TERMINAL[Entity.CONTEXT]
    step_terminal = TERMINAL[Entity.STEP]
    live = [b for b in view["batches"] if b["state"] in BATCH_LIVE]
    if view["state"] == "Running":
        assert len(live) == 1, f"a running pipeline has exactly one live batch: {view['batches']}"
    else:
        assert view["state"] == COMPLETE, view["state"]
        assert not live, view["batches"]
        assert view["status"] == expected_pipeline_status(view).value, view
    seen_end = hooks_began = False
    for b in view["batches"]:
        states = [c["state"] for c in b["contexts"]]
        if b.get("hooks") and not hooks_began:  # they start once the run's own have ended
            hooks_began, seen_end = True, False
        if seen_end:
            assert b["state"] in ("Pending", NOT_RUN), f"batch after the end: {b}"
        if b["state"] == COMPLETE:
            assert all(s in ctx_terminal for s in states), f"Complete batch, live context: {b}"
            outcomes = [Status(s) for s in states if s in OUTCOMES]
            if view["abort_requested"] and NOT_RUN in states:
                outcomes.append(Status.ABORTED)
            assert b["status"] == worst(outcomes).value, f"batch status is not the worst: {b}"
            if Status(b["status"]).is_failure:
                seen_end = True
        elif b["state"] == NOT_RUN:
            assert all(s == NOT_RUN for s in states), b
            assert b["status"] is None
            seen_end = True
        elif b["state"] == "Pending":
            assert all(s == "Pending" for s in states), b
            seen_end = True  # nothing after a Pending batch has started either
        for c in b["contexts"]:
            steps = [s["state"] for s in c["steps"]]
            if c["state"] == "Pending":
                assert all(s == "Pending" for s in steps), c
            elif c["state"] in (NOT_RUN, SKIPPED):
                assert all(s == NOT_RUN for s in steps), c
            elif c["state"] in ctx_terminal:
                assert all(s in step_terminal for s in steps), f"terminal context, live step: {c}"
            if b["mode"] == "Linear" and c["state"] in ("Running", "Aborting"):
                before = b["contexts"][: b["contexts"].index(c)]
                assert all(x["state"] in ctx_terminal for x in before), b
        failed = [
            i
            for i, c in enumerate(b["contexts"])
            if c["state"] in OUTCOMES and Status(c["state"]).is_failure
        ]
        if failed and b["mode"] != "Parallel":
            # Fanout: no sibling still Pending/Running; Linear: nothing after it left to run
            # (NotRun, or terminal already: a provisioning failure may come out of turn).
            first = failed[0]
            for i, c in enumerate(b["contexts"]):
                if b["mode"] == "Fanout" or i > first:
                    assert c["state"] not in ("Pending", "Running"), f"failure not reacted: {b}"
                if b["mode"] == "Linear" and i > first:
                    assert c["state"] in ctx_terminal, f"Linear after a failure: {b}"
    if view["state"] == COMPLETE:
        for b in view["batches"]:
            assert b["state"] in (COMPLETE, NOT_RUN), b
    return view


def snapshot(psm: PipelineStateMachine, uuid: str) -> tuple[int, dict[str, Any]]:
    """What must not change when a request is refused: the log's length and every state."""
    return last_seq(psm), state_of(psm, uuid)


def step_once(
    psm: PipelineStateMachine,
    uuid: str,
    rng: Any,
    orchestrator: str = ORCH,
    codes: Sequence[int] = (0, 0, 0, 0, 3, 1),
    on_lease: Callable[[Lease], None] = lambda lease: None,
) -> bool:
    """One small executor action on a pipeline (award, claim, step report, context end).

    False once the pipeline is Complete.
    """
    view = psm.get(uuid)
    if view["state"] == COMPLETE:
        return False
    live = next(b for b in view["batches"] if b["state"] in BATCH_LIVE)["contexts"]
    for ctx in live:
        if ctx["state"] == "Pending" and ctx["orchestrator"] is None:
            psm.award(ctx["uuid"], orchestrator)
            return True

    def claim() -> bool:
        for ctx in live:
            if ctx["state"] == "Pending":
                try:
                    lease = psm.claim(ctx["uuid"], ctx["orchestrator"])
                except Conflict:
                    continue  # Linear: not its turn
                on_lease(lease)
                return True
        return False

    if rng.random() < 0.5 and claim():
        return True
    for ctx in live:
        if ctx["state"] not in ("Running", "Aborting"):
            continue
        lease = lease_of(psm, ctx["uuid"])
        if ctx["state"] == "Aborting":
            psm.context_finished(lease, Status.ABORTED)
            return True
        for step in ctx["steps"]:
            if step["state"] == "Pending":
                psm.step_started(lease, step["uuid"])
                return True
            if step["state"] == "Running":
                psm.step_finished(lease, step["uuid"], exit_code=rng.choice(codes))
                return True
        psm.context_finished(lease, worst(Status(s["state"]) for s in ctx["steps"]))
        return True
    claim()
    return True
