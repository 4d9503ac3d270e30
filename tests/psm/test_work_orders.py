"""What the queue offers and what a claim hands out, on both backends: only contexts that
may start now are open for auction (a Linear batch's next one), and a claim answers with
the whole work order (lease, context model, checkout)."""

from __future__ import annotations

from typing import Any

import pytest
from psmkit import ORCH, contexts, make_pipeline, run_context

from otto.model import Checkout
from otto.psm import Conflict
from otto.psm.rules import BatchState, ContextState, claimable
from otto.status import Status

COMMIT = Checkout(url="https://forge.example/acme/app.git", sha="a1b2c3d4", branch="main")


def open_of(psm: Any, uuid: str) -> list[str]:
    return [c["name"] for c in psm.open_contexts() if c["pipeline"] == uuid]


def test_a_linear_batch_offers_one_context_at_a_time(psm: Any) -> None:
    model = make_pipeline(("Linear", [1, 1, 1]))
    uuid = psm.create(model).uuid
    assert open_of(psm, uuid) == ["b0c0"]
    c0, _, _ = contexts(psm, uuid)
    psm.award(c0["uuid"], ORCH)
    assert open_of(psm, uuid) == []
    # Its one offered context awarded, the batch is provisioned: the claim goes through.
    assert psm.get(uuid)["batches"][0]["state"] == "Provisioning"
    run_context(psm, contexts(psm, uuid)[0])
    assert open_of(psm, uuid) == ["b0c1"]


def test_a_failed_linear_context_offers_nothing_more(psm: Any) -> None:
    uuid = psm.create(make_pipeline(("Linear", [1, 1]), ("Parallel", [1]))).uuid
    c0 = contexts(psm, uuid)[0]
    psm.award(c0["uuid"], ORCH)
    assert run_context(psm, contexts(psm, uuid)[0], [1]) == Status.FAILED
    assert open_of(psm, uuid) == []
    assert psm.get(uuid)["state"] == "Complete"


@pytest.mark.parametrize("mode", ["Parallel", "Fanout"])
def test_other_modes_offer_every_pending_context(psm: Any, mode: str) -> None:
    uuid = psm.create(make_pipeline((mode, [1, 1, 1]))).uuid
    assert open_of(psm, uuid) == ["b0c0", "b0c1", "b0c2"]


def test_a_claim_hands_out_the_whole_work_order(psm: Any) -> None:
    model = make_pipeline(("Parallel", [2]))
    uuid = psm.create(model, checkout=COMMIT).uuid
    (ctx,) = contexts(psm, uuid)
    psm.award(ctx["uuid"], ORCH)
    order = psm.claim_work(ctx["uuid"], ORCH, "none")
    assert (order.lease.context, order.lease.epoch, order.lease.orchestrator) == (
        ctx["uuid"],
        1,
        ORCH,
    )
    assert order.context == model.batches[0].contexts[0]
    assert order.checkout == COMMIT
    answer = order.to_dict()
    assert answer["context"] == ctx["uuid"] and answer["epoch"] == 1  # the lease, as before
    assert answer["model"]["steps"] and answer["checkout"]["sha"] == COMMIT.sha
    with pytest.raises(Conflict):
        psm.claim_work(ctx["uuid"], ORCH)  # running already


def test_a_run_without_a_commit_has_no_checkout(psm: Any) -> None:
    uuid = psm.create(make_pipeline(("Linear", [1]))).uuid
    (ctx,) = contexts(psm, uuid)
    psm.award(ctx["uuid"], ORCH)
    assert psm.claim_work(ctx["uuid"], ORCH).checkout is None


# -- the rule alone, no database ---------------------------------------------------


def batch(mode: str, *states: str) -> BatchState:
    ctxs = tuple(ContextState(f"c{i}", 0, i, s) for i, s in enumerate(states))
    return BatchState(0, mode, "Executing", contexts=ctxs)


@pytest.mark.parametrize(
    ("mode", "states", "offered"),
    [
        ("Linear", ["Pending", "Pending"], ["c0"]),
        ("Linear", ["Running", "Pending"], []),
        ("Linear", ["Aborting", "Pending"], []),
        ("Linear", ["Success", "Pending", "Pending"], ["c1"]),
        ("Linear", ["Success", "Success"], []),
        ("Linear", ["Failed", "NotRun"], []),
        ("Parallel", ["Running", "Pending", "Success", "Pending"], ["c1", "c3"]),
        ("Fanout", ["Pending", "Pending"], ["c0", "c1"]),
    ],
)
def test_what_may_start_now(mode: str, states: list[str], offered: list[str]) -> None:
    assert [c.uuid for c in claimable(batch(mode, *states))] == offered
