"""Stage timeouts: a stored deadline, set at the claim, enforced by the PSM (also after a
restart) when no agent reports by then."""

from __future__ import annotations

import time
from typing import Any

import pytest
from psmkit import ORCH, all_transitions, award_all, context_row, contexts, make_pipeline

from otto.psm import Conflict, Lease
from otto.psm.machine import DEADLINE_GRACE
from otto.status import Status


def claimed(psm: Any, timeout: str | None) -> tuple[str, dict[str, Any], Lease, float]:
    """A one-context run of two steps (its stage's `timeout` set, when given), claimed."""
    model = make_pipeline(("Linear", [2]))
    if timeout is not None:
        model.batches[0].contexts[0].properties["timeout"] = timeout
    uuid = psm.create(model).uuid
    award_all(psm, uuid)
    ctx = contexts(psm, uuid)[0]
    before = time.time()
    return uuid, ctx, psm.claim(ctx["uuid"], ORCH), before


def reasons(psm: Any, uuid: str) -> dict[str, str | None]:
    """Each entity's latest transition reason, by id."""
    return {t["id"]: t["reason"] for t in all_transitions(psm) if t["pipeline"] == uuid}


def test_the_claim_sets_the_stage_deadline(open_psm: Any) -> None:
    psm = open_psm()
    _, ctx, lease, before = claimed(psm, "1h30m")
    assert lease.deadline is not None
    assert before + 5400 <= lease.deadline <= time.time() + 5400
    assert context_row(psm, ctx["uuid"])["deadline"] == lease.deadline
    assert psm.renew(lease).deadline == lease.deadline  # a renewal does not move it


def test_a_stage_without_a_timeout_gets_the_default(open_psm: Any) -> None:
    psm = open_psm(default_stage_timeout=5.0)
    _, _, lease, before = claimed(psm, None)
    assert lease.deadline is not None
    assert before + 5 <= lease.deadline <= time.time() + 5


def test_past_its_deadline_a_context_fails_with_timeout_even_after_a_restart(
    open_psm: Any,
) -> None:
    psm = open_psm(lease_seconds=3600.0)
    uuid, ctx, lease, _ = claimed(psm, "2s")
    assert lease.deadline is not None
    first, second = (s["uuid"] for s in ctx["steps"])
    psm.step_started(lease, first)

    restarted = open_psm(lease_seconds=3600.0)  # the deadline is in the store, not in memory
    due = lease.deadline + DEADLINE_GRACE
    assert restarted.next_deadline() == pytest.approx(due)
    assert restarted.expire_leases(now=due - 0.5) == 0  # the agent has its grace to report
    assert restarted.expire_leases(now=due) == 1

    run = restarted.get(uuid)
    context = run["batches"][0]["contexts"][0]
    assert (run["state"], run["status"]) == ("Complete", "Failed")
    assert context["state"] == "Failed"
    assert [s["state"] for s in context["steps"]] == ["Failed", "NotRun"]
    why = reasons(restarted, uuid)
    assert (why[ctx["uuid"]], why[first], why[second]) == ("timeout", "timeout", "timeout")
    # The agent, had it hung on, is refused from now on (its orchestrator then stops it).
    with pytest.raises(Conflict):
        restarted.renew(lease)
    assert restarted.next_deadline() is None


def test_a_context_that_ends_in_time_is_left_alone(open_psm: Any) -> None:
    psm = open_psm(lease_seconds=3600.0)
    uuid, ctx, lease, _ = claimed(psm, "2s")
    assert lease.deadline is not None
    for step in (s["uuid"] for s in ctx["steps"]):
        psm.step_started(lease, step)
        psm.step_finished(lease, step, exit_code=0)
    psm.context_finished(lease, Status.SUCCESS)
    assert psm.expire_leases(now=lease.deadline + DEADLINE_GRACE + 60) == 0
    assert psm.get(uuid)["status"] == "Success"
