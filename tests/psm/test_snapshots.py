"""The snapshot the rules decide on (`queries.run_state`) is the run as stored, on both
backends (fixture `psm`), and reading it costs the same for a young database as for an
old one."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from psmkit import ORCH, award_all, make_pipeline, run_context, state_of

from otto.psm import PipelineStateMachine
from otto.psm.errors import NotFound
from otto.psm.rules import RunState
from otto.psm.store import queries


def read(psm: PipelineStateMachine, uuid: str, steps: bool | str = True) -> RunState:
    return psm.store.read(lambda tx: queries.run_state(tx, uuid, steps))


def as_stored(run: RunState) -> dict[str, Any]:
    """A snapshot in `state_of`'s terms."""
    return {
        "pipeline": run.state,
        "batches": [(b.state, b.status) for b in run.batches],
        "contexts": {c.uuid: c.state for b in run.batches for c in b.contexts},
        "steps": {s.uuid: s.state for b in run.batches for c in b.contexts for s in c.steps or ()},
    }


def test_a_snapshot_holds_every_state_in_order(psm: PipelineStateMachine) -> None:
    model = make_pipeline(("Linear", [2, 0]), ("Parallel", [1, 3]), ("Fanout", [2]))
    uuid = psm.create(model).uuid
    award_all(psm, uuid)
    first = psm.get(uuid)["batches"][0]["contexts"][0]
    run_context(psm, first)
    psm.abort(uuid)

    run = read(psm, uuid)
    stored = state_of(psm, uuid)
    assert as_stored(run) == {**stored, "pipeline": stored["pipeline"][0]}
    assert [b.idx for b in run.batches] == [0, 1, 2]
    assert [b.mode for b in run.batches] == ["Linear", "Parallel", "Fanout"]
    for batch, modelled in zip(run.batches, model.batches, strict=True):
        assert [c.uuid for c in batch.contexts] == [c.uuid for c in modelled.contexts]
        assert [c.position for c in batch.contexts] == list(range(len(modelled.contexts)))
        for ctx, ctx_model in zip(batch.contexts, modelled.contexts, strict=True):
            assert ctx.batch == batch.idx
            assert [s.uuid for s in ctx.steps] == [s.uuid for s in ctx_model.steps]
    assert run.batches[0].contexts[0].orchestrator == ORCH
    assert run.abort_requested and run.abort_reason == "user_abort"

    without = read(psm, uuid, steps=False)
    assert all(c.steps is None for b in without.batches for c in b.contexts)  # not read
    assert as_stored(without)["contexts"] == as_stored(run)["contexts"]

    # A context's steps only (what an ending context needs): its own, in order.
    narrow = read(psm, uuid, steps=first["uuid"])
    assert {**as_stored(narrow), "steps": {}} == {**as_stored(run), "steps": {}}
    held = {c.uuid: c.steps for b in narrow.batches for c in b.contexts if c.steps is not None}
    assert held == {first["uuid"]: run.batches[0].contexts[0].steps}

    # A context's batch (what a claim or an award decides on), as the run's snapshot has it.
    for whole in run.batches:
        for ctx in whole.contexts:
            own, batch = psm.store.read(lambda tx, c=ctx.uuid: queries.batch_of(tx, c))
            assert batch == replace(
                whole, contexts=tuple(replace(c, steps=None) for c in whole.contexts)
            )
            assert (own["pipeline"], own["batch"]) == (uuid, whole.idx)
    claimed = psm.get(uuid)["batches"][0]["contexts"][0]
    own, _ = psm.store.read(lambda tx: queries.batch_of(tx, first["uuid"]))
    assert (own["attempt"], own["lease_epoch"]) == (claimed["attempt"], 1)
    with pytest.raises(NotFound):
        psm.store.read(lambda tx: queries.batch_of(tx, "no-such-context"))


def test_a_rejected_run_has_no_batches(psm: PipelineStateMachine) -> None:
    uuid = psm.create(make_pipeline(("Linear", [1])), rejected=("config_error", "bad")).uuid
    run = read(psm, uuid)
    assert (run.state, run.batches) == ("Complete", ())


# PostgreSQL only: SQLite's planner joins through the index whatever the table holds.
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_snapshot_reads_only_its_runs_steps(psm: PipelineStateMachine) -> None:
    """The plan a prepared statement keeps, made before any statistics exist, looks up the
    steps of each context by index: it does not read every step of every run."""
    uuids = [psm.create(make_pipeline(("Parallel", [3, 3, 3]))).uuid for _ in range(150)]

    def plan(tx: Any) -> str:
        tx.run("SET LOCAL plan_cache_mode = force_generic_plan")
        tx.run(f"PREPARE snapshot(text) AS {queries._WITH_STEPS['postgres'].replace('?', '$1')}")
        try:
            rows = tx.all(f"EXPLAIN EXECUTE snapshot('{uuids[-1]}')")
        finally:
            tx.run("DEALLOCATE snapshot")
        return "\n".join(str(next(iter(r.values()))) for r in rows)

    assert "Seq Scan on steps" not in psm.store.read(plan)
