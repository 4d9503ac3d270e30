"""Automatic retries: an attempt lost to the infrastructure (`agent_lost`,
`provision_failed`) runs again once, as a stage's `retry_on` asks (by default both);
a failing step never does."""

from __future__ import annotations

from typing import Any

import pytest
from psmkit import ORCH, all_transitions, award_all, check_log, check_pipeline, make_pipeline

from otto.psm import Conflict, Lease
from otto.status import Status


def of(psm: Any, uuid: str, ident: str) -> list[tuple[str, str, str | None]]:
    """An entity's transitions: (from, to, reason)."""
    return [
        (t["from_state"], t["to_state"], t["reason"])
        for t in all_transitions(psm)
        if t["pipeline"] == uuid and t["id"] == ident
    ]


def context(psm: Any, uuid: str, batch: int = 0, position: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = psm.get(uuid)["batches"][batch]["contexts"][position]
    return found


def claim(psm: Any, uuid: str, position: int = 0) -> Lease:
    award_all(psm, uuid)
    lease: Lease = psm.claim(context(psm, uuid, position=position)["uuid"], ORCH)
    return lease


def test_a_lost_agent_is_retried_once_as_a_new_attempt(psm: Any) -> None:
    uuid = psm.create(make_pipeline(("Linear", [2, 1]), ("Parallel", [1]))).uuid
    first = claim(psm, uuid)
    ctx = context(psm, uuid)
    step = ctx["steps"][0]["uuid"]
    psm.step_started(first, step)

    assert psm.expire_leases(now=first.expires_at) == 1
    view = check_pipeline(psm, uuid)
    again = view["batches"][0]["contexts"]
    assert [c["state"] for c in again] == ["Pending", "Pending"]  # Linear: nothing stopped
    assert [s["state"] for s in again[0]["steps"]] == ["Pending", "Pending"]
    assert view["state"] == "Running"
    assert of(psm, uuid, ctx["uuid"])[-2:] == [
        ("Running", "Error", "agent_lost"),
        ("Error", "Pending", "auto_retry"),
    ]
    retry = next(t for t in all_transitions(psm) if t["reason"] == "auto_retry")
    assert '"cause": "agent_lost"' in retry["data"]
    assert of(psm, uuid, step)[-2:] == [
        ("Running", "Error", "agent_lost"),
        ("Error", "Pending", "auto_retry"),
    ]
    with pytest.raises(Conflict):  # the lost attempt can never report into the new one
        psm.context_finished(first, Status.SUCCESS)

    second = claim(psm, uuid)
    assert second.epoch == first.epoch + 1
    assert context(psm, uuid)["attempt"] == 2
    # Lost again: one automatic retry is all it gets.
    assert psm.expire_leases(now=second.expires_at) == 1
    view = check_pipeline(psm, uuid)
    assert [c["state"] for c in view["batches"][0]["contexts"]] == ["Error", "NotRun"]
    assert (view["state"], view["status"]) == ("Complete", "Error")

    psm.retry(uuid)  # by hand: its automatic retry is its own again
    third = claim(psm, uuid)
    assert psm.expire_leases(now=third.expires_at) == 1
    assert context(psm, uuid)["state"] == "Pending"
    check_log(psm)


def test_a_failed_provisioning_is_retried_a_failing_step_never(psm: Any) -> None:
    uuid = psm.create(make_pipeline(("Parallel", [1, 1]))).uuid
    award_all(psm, uuid)
    unprovisioned, failing = (context(psm, uuid, position=p) for p in (0, 1))
    lease = psm.claim(unprovisioned["uuid"], ORCH)
    psm.context_finished(lease, Status.ERROR, "provision_failed: no container engine here")
    assert of(psm, uuid, unprovisioned["uuid"])[-2:] == [
        ("Running", "Error", "provision_failed: no container engine here"),
        ("Error", "Pending", "auto_retry"),
    ]

    lease = psm.claim(failing["uuid"], ORCH)
    step = failing["steps"][0]["uuid"]
    psm.step_started(lease, step)
    psm.step_finished(lease, step, exit_code=1)
    psm.context_finished(lease, Status.FAILED, "exit code 1")
    assert context(psm, uuid, position=1)["state"] == "Failed"
    assert "auto_retry" not in {r for _, _, r in of(psm, uuid, failing["uuid"])}

    lease = claim(psm, uuid)  # the retried one, now fine
    psm.context_finished(lease, Status.SUCCESS)
    view = check_pipeline(psm, uuid)
    assert (view["state"], view["status"]) == ("Complete", "Failed")
    check_log(psm)


def test_retry_on_chooses_the_failures_retried(psm: Any) -> None:
    lost_only = psm.create(make_pipeline(("Parallel", [1]), retry_on="agent_lost")).uuid
    lease = claim(psm, lost_only)
    psm.context_finished(lease, Status.ERROR, "provision_failed: cannot start an agent")
    assert context(psm, lost_only)["state"] == "Error"

    never = psm.create(make_pipeline(("Parallel", [1]), retry_on="")).uuid
    lease = claim(psm, never)
    assert psm.expire_leases(now=lease.expires_at) == 1
    assert context(psm, never)["state"] == "Error"
    assert (psm.get(never)["state"], psm.get(never)["status"]) == ("Complete", "Error")
    check_log(psm)


def test_a_steps_work_order_says_which_attempt_it_is(psm: Any) -> None:
    uuid = psm.create(make_pipeline(("Linear", [1]))).uuid
    award_all(psm, uuid)
    first = psm.claim_work(context(psm, uuid)["uuid"], ORCH)
    assert first.variables["OTTO_ATTEMPT"] == "1"
    assert psm.expire_leases(now=first.lease.expires_at) == 1  # lost: it runs again
    award_all(psm, uuid)
    second = psm.claim_work(context(psm, uuid)["uuid"], ORCH)
    assert second.variables["OTTO_ATTEMPT"] == "2"
