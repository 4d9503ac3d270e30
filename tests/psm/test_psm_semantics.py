"""The PSM's semantics (batch modes, statuses, aborts), on both backends (fixture `psm`)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from psmkit import (
    ORCH,
    all_transitions,
    award_all,
    check_log,
    check_pipeline,
    contexts,
    drive,
    lease_of,
    make_pipeline,
    run_context,
    snapshot,
)

from otto.psm import About, Conflict, Lease, NotFound, StaleLease
from otto.psm.states import ALLOWED, TERMINAL, Entity, table
from otto.status import Status, worst


def by_id(psm: Any, uuid: str, ident: str) -> list[dict[str, Any]]:
    return [t for t in all_transitions(psm) if t["pipeline"] == uuid and t["id"] == ident]


def refused(psm: Any, uuid: str, call: Any, error: type[Exception] = Conflict) -> None:
    """`call()` is refused with `error` and changes nothing."""
    before = snapshot(psm, uuid)
    with pytest.raises(error):
        call()
    assert snapshot(psm, uuid) == before


def started(psm: Any, *spec: tuple[str, list[int]], **kw: Any) -> tuple[str, Any]:
    model = make_pipeline(*spec)
    created = psm.create(model, **kw)
    assert not created.duplicate
    return created.uuid, model


# -- statuses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (0, "Success"),
        (3, "Failed"),  # real tools exit 2 or 3 on plain errors (make, pytest)
        (2, "Failed"),
        (1, "Failed"),
        (137, "Failed"),
        (-9, "Failed"),
    ],
)
def test_exit_code_to_status(psm: Any, code: int, status: str) -> None:
    uuid, _ = started(psm, ("Linear", [1]))
    award_all(psm, uuid)
    ctx = contexts(psm, uuid)[0]
    lease = psm.claim(ctx["uuid"], ORCH)
    step = ctx["steps"][0]["uuid"]
    psm.step_started(lease, step)
    assert psm.step_finished(lease, step, exit_code=code) == Status(status)
    view = psm.get(uuid)
    shown = view["batches"][0]["contexts"][0]["steps"][0]
    assert (shown["state"], shown["status"], shown["exit_code"]) == (status, status, code)
    assert by_id(psm, uuid, step)[-1]["status"] == status


def test_worst_order() -> None:
    order = [Status.SUCCESS, Status.UNSTABLE, Status.ABORTED, Status.FAILED, Status.ERROR]
    assert [s.rank for s in order] == [0, 1, 2, 3, 4]
    for i, a in enumerate(order):
        for b in order[i:]:
            assert worst([a, b]) == worst([b, a]) == b
    assert worst([]) == Status.SUCCESS
    assert [s.is_failure for s in order] == [False, False, True, True, True]


def test_table_is_data_and_terminal_states_have_no_exit() -> None:
    served = table()
    assert set(served) == {"pipeline", "batch", "context", "step"}
    for entity, states in ALLOWED.items():
        assert set(served[entity.value]) == set(states)
        for state in states:
            assert served[entity.value][state] == sorted(states[state])
            for target in states[state]:
                assert target in states, f"{entity}: {state} → unknown {target}"
    assert {"AuctionStarted", "AuctionCompleted", "Provisioning", "Executing"} <= set(
        ALLOWED[Entity.BATCH]
    )
    assert {"Aborting", "Error", "NotRun"} <= set(ALLOWED[Entity.CONTEXT])
    assert TERMINAL[Entity.CONTEXT] == {
        "Success",
        "Unstable",
        "Failed",
        "Aborted",
        "Error",
        "NotRun",
        "Skipped",
    }
    assert ALLOWED[Entity.CONTEXT]["Pending"] >= {"Skipped"}
    assert TERMINAL[Entity.PIPELINE] == {"Complete"}


# -- batch modes -------------------------------------------------------------------


def test_batch_walks_through_auction_states(psm: Any) -> None:
    uuid, _ = started(psm, ("Parallel", [1, 1]))
    assert psm.get(uuid)["batches"][0]["state"] == "AuctionStarted"
    first, second = contexts(psm, uuid)
    psm.award(first["uuid"], "orch-a")
    assert psm.get(uuid)["batches"][0]["state"] == "AuctionStarted"
    psm.award(second["uuid"], "orch-b")
    assert psm.get(uuid)["batches"][0]["state"] == "Provisioning"
    refused(psm, uuid, lambda: psm.claim(first["uuid"], "orch-b"))  # not its orchestrator
    psm.claim(first["uuid"], "orch-a")
    assert psm.get(uuid)["batches"][0]["state"] == "Executing"
    batch_log = [(t["from_state"], t["to_state"]) for t in by_id(psm, uuid, "0")]
    assert batch_log == [
        ("Pending", "AuctionStarted"),
        ("AuctionStarted", "AuctionCompleted"),
        ("AuctionCompleted", "Provisioning"),
        ("Provisioning", "Executing"),
    ]
    awarded = by_id(psm, uuid, "0")[1]
    assert awarded["data"] and "orch-a" in awarded["data"] and "orch-b" in awarded["data"]
    assert contexts(psm, uuid)[0]["orchestrator"] == "orch-a"
    check_log(psm)


def test_linear_runs_in_order(psm: Any) -> None:
    uuid, _ = started(psm, ("Linear", [1, 1, 1]))
    award_all(psm, uuid)
    c0, c1, c2 = contexts(psm, uuid)
    refused(psm, uuid, lambda: psm.claim(c1["uuid"], ORCH))
    refused(psm, uuid, lambda: psm.claim(c2["uuid"], ORCH))
    lease = psm.claim(c0["uuid"], ORCH)
    refused(psm, uuid, lambda: psm.claim(c1["uuid"], ORCH))  # c0 is running, not finished
    psm.context_finished(lease, Status.SUCCESS)
    refused(psm, uuid, lambda: psm.claim(c2["uuid"], ORCH))
    assert run_context(psm, contexts(psm, uuid)[1]) == Status.SUCCESS
    assert run_context(psm, contexts(psm, uuid)[2]) == Status.SUCCESS
    view = check_pipeline(psm, uuid)
    assert (view["state"], view["status"]) == ("Complete", "Success")
    check_log(psm)


def test_linear_stops_at_first_failure(psm: Any) -> None:
    uuid, _ = started(psm, ("Linear", [1, 1, 2]))
    award_all(psm, uuid)
    c0, c1, c2 = contexts(psm, uuid)
    assert run_context(psm, c0) == Status.SUCCESS
    assert run_context(psm, c1, [1]) == Status.FAILED
    view = check_pipeline(psm, uuid)
    states = [c["state"] for c in view["batches"][0]["contexts"]]
    assert states == ["Success", "Failed", "NotRun"]
    assert [s["state"] for s in view["batches"][0]["contexts"][2]["steps"]] == ["NotRun"] * 2
    skipped = by_id(psm, uuid, c2["uuid"])
    assert [(t["from_state"], t["to_state"], t["reason"]) for t in skipped] == [
        ("Pending", "NotRun", "previous_context_failed")
    ]
    assert (view["batches"][0]["status"], view["state"], view["status"]) == (
        "Failed",
        "Complete",
        "Failed",
    )
    refused(psm, uuid, lambda: psm.claim(c2["uuid"], ORCH))
    check_log(psm)


def test_parallel_contexts_are_independent(psm: Any) -> None:
    uuid, _ = started(psm, ("Parallel", [1, 1, 1]), ("Linear", [1]))
    award_all(psm, uuid)
    c0, c1, c2 = contexts(psm, uuid, batch=0)
    leases = [psm.claim(c["uuid"], ORCH) for c in (c2, c0, c1)]  # any order
    psm.context_finished(leases[2], Status.FAILED)  # c1 fails
    states = [c["state"] for c in contexts(psm, uuid, batch=0)]
    assert states == ["Running", "Failed", "Running"]  # siblings untouched
    psm.context_finished(leases[1], Status.UNSTABLE)
    psm.context_finished(leases[0], Status.SUCCESS)
    view = check_pipeline(psm, uuid)
    assert [c["state"] for c in view["batches"][0]["contexts"]] == ["Unstable", "Failed", "Success"]
    assert view["batches"][0]["status"] == "Failed"
    assert view["batches"][1]["state"] == "NotRun"  # a failed batch ends the run
    assert view["status"] == "Failed"
    check_log(psm)


def test_fanout_failure_aborts_siblings(psm: Any) -> None:
    uuid, _ = started(psm, ("Fanout", [1, 1, 2, 1]), ("Parallel", [1]))
    award_all(psm, uuid)
    c0, c1, c2, c3 = contexts(psm, uuid, batch=0)
    l0 = psm.claim(c0["uuid"], ORCH)
    l1 = psm.claim(c1["uuid"], ORCH)
    psm.step_started(l1, c1["steps"][0]["uuid"])
    assert not psm.renew(l1).aborting
    psm.step_started(l0, c0["steps"][0]["uuid"])
    psm.step_finished(l0, c0["steps"][0]["uuid"], exit_code=1)
    psm.context_finished(l0, Status.FAILED)

    states = [c["state"] for c in contexts(psm, uuid, batch=0)]
    assert states == ["Failed", "Aborting", "NotRun", "NotRun"]
    for ctx, path in [
        (c1, [("Pending", "Running"), ("Running", "Aborting")]),
        (c2, [("Pending", "NotRun")]),  # never started
        (c3, [("Pending", "NotRun")]),
    ]:
        log = by_id(psm, uuid, ctx["uuid"])
        assert [(t["from_state"], t["to_state"]) for t in log] == path
        assert log[-1]["reason"] == "fanout_sibling_failed"
    assert [s["state"] for s in contexts(psm, uuid, batch=0)[2]["steps"]] == ["NotRun"] * 2
    assert psm.get(uuid)["batches"][0]["state"] == "Executing"  # c1 has not confirmed yet
    refused(psm, uuid, lambda: psm.claim(c2["uuid"], ORCH))

    renewed = psm.renew(l1)
    assert renewed.aborting and renewed.epoch == l1.epoch
    psm.context_finished(l1, Status.ABORTED)
    view = check_pipeline(psm, uuid)
    assert [c["state"] for c in view["batches"][0]["contexts"]] == [
        "Failed",
        "Aborted",
        "NotRun",
        "NotRun",
    ]
    assert view["batches"][0]["contexts"][1]["steps"][0]["state"] == "Aborted"  # was running
    # The cause, not the consequence: Failed, not Aborted.
    assert (view["batches"][0]["state"], view["batches"][0]["status"]) == ("Complete", "Failed")
    assert view["batches"][1]["state"] == "NotRun"
    assert (view["state"], view["status"]) == ("Complete", "Failed")
    check_log(psm)


def test_fanout_aborting_sibling_may_still_report_its_real_outcome(psm: Any) -> None:
    uuid, _ = started(psm, ("Fanout", [0, 0]))
    award_all(psm, uuid)
    c0, c1 = contexts(psm, uuid)
    l0, l1 = psm.claim(c0["uuid"], ORCH), psm.claim(c1["uuid"], ORCH)
    psm.context_finished(l0, Status.ERROR)
    psm.context_finished(l1, Status.SUCCESS)  # finished before it saw the abort
    view = check_pipeline(psm, uuid)
    assert [c["state"] for c in view["batches"][0]["contexts"]] == ["Error", "Success"]
    assert view["status"] == "Error"


def test_failed_batch_ends_the_run(psm: Any) -> None:
    uuid, _ = started(psm, ("Parallel", [1]), ("Fanout", [1, 0]), ("Linear", [2]))
    award_all(psm, uuid)
    run_context(psm, contexts(psm, uuid, batch=0)[0], [4])
    view = check_pipeline(psm, uuid)
    assert [b["state"] for b in view["batches"]] == ["Complete", "NotRun", "NotRun"]
    assert [b["status"] for b in view["batches"]] == ["Failed", None, None]
    for b in view["batches"][1:]:
        for c in b["contexts"]:
            assert c["state"] == "NotRun"
            assert all(s["state"] == "NotRun" for s in c["steps"])
            assert by_id(psm, uuid, c["uuid"])[-1]["reason"] == "previous_batch_failed"
    assert by_id(psm, uuid, "1")[-1]["reason"] == "previous_batch_failed"
    assert (view["state"], view["status"]) == ("Complete", "Failed")
    assert psm.open_contexts() == []
    check_log(psm)


def test_unstable_does_not_stop_the_run(psm: Any) -> None:
    uuid, _ = started(psm, ("Linear", [1, 1]), ("Fanout", [1, 1]), ("Parallel", [1]))
    codes: dict[str, Status] = {}

    def code(step: dict[str, Any]) -> Status:
        said = Status.UNSTABLE if len(codes) in (0, 2) else Status.SUCCESS
        return codes.setdefault(step["uuid"], said)

    view = drive(psm, uuid, code)
    assert [c["state"] for c in view["batches"][0]["contexts"]] == ["Unstable", "Success"]
    assert [b["status"] for b in view["batches"]] == ["Unstable", "Unstable", "Success"]
    assert (view["state"], view["status"]) == ("Complete", "Unstable")
    check_pipeline(psm, uuid)


@pytest.mark.parametrize(
    ("outcomes", "batch_statuses", "pipeline_status"),
    [
        ([["Success"], ["Success", "Success"]], ["Success", "Success"], "Success"),
        ([["Success", "Unstable"], ["Success"]], ["Unstable", "Success"], "Unstable"),
        ([["Unstable", "Aborted", "Success"], ["Success"]], ["Aborted", None], "Aborted"),
        ([["Aborted", "Failed"], ["Success"]], ["Failed", None], "Failed"),
        ([["Error", "Failed", "Unstable"], ["Success"]], ["Error", None], "Error"),
        ([["Success"], ["Unstable", "Error"]], ["Success", "Error"], "Error"),
    ],
)
def test_worst_wins_roll_up(
    psm: Any, outcomes: list[list[str]], batch_statuses: list[str | None], pipeline_status: str
) -> None:
    uuid, _ = started(psm, *[("Parallel", [0] * len(b)) for b in outcomes])
    for b, wanted in enumerate(outcomes):
        if psm.get(uuid)["state"] == "Complete":
            break
        award_all(psm, uuid)
        leases = [psm.claim(c["uuid"], ORCH) for c in contexts(psm, uuid, batch=b)]
        for lease, outcome in zip(leases, wanted, strict=True):
            psm.context_finished(lease, Status(outcome))
    view = check_pipeline(psm, uuid)
    assert [b["status"] for b in view["batches"]] == batch_statuses
    assert view["status"] == pipeline_status
    statuses = [Status(b["status"]) for b in view["batches"] if b["status"]]
    assert view["status"] == worst(statuses).value


def test_step_statuses_and_context_outcome(psm: Any) -> None:
    uuid, _ = started(psm, ("Linear", [4]))
    award_all(psm, uuid)
    ctx = contexts(psm, uuid)[0]
    lease = psm.claim(ctx["uuid"], ORCH)
    steps = [s["uuid"] for s in ctx["steps"]]
    psm.step_started(lease, steps[0])
    psm.step_finished(lease, steps[0], exit_code=3)
    psm.step_started(lease, steps[1])
    psm.step_finished(lease, steps[1], status=Status.ERROR, reason="timeout")
    psm.step_started(lease, steps[2])  # still running when the context ends
    psm.context_finished(lease, Status.ERROR, reason="timeout")
    got = [s["state"] for s in contexts(psm, uuid)[0]["steps"]]
    assert got == ["Failed", "Error", "Error", "NotRun"]  # exit code 3: any non-zero fails
    assert by_id(psm, uuid, steps[1])[-1]["reason"] == "timeout"
    assert by_id(psm, uuid, ctx["uuid"])[-1]["reason"] == "timeout"
    with pytest.raises(ValueError):
        psm.step_finished(lease, steps[3])
    check_log(psm)


# -- aborts ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["Linear", "Parallel", "Fanout"])
def test_user_abort_of_running_and_pending(psm: Any, mode: str) -> None:
    uuid, _ = started(psm, (mode, [1, 1, 1]), ("Parallel", [1]))
    award_all(psm, uuid)
    c0, c1, c2 = contexts(psm, uuid, batch=0)
    l0 = psm.claim(c0["uuid"], ORCH)
    l1 = psm.claim(c1["uuid"], ORCH) if mode != "Linear" else None
    psm.abort(uuid, actor="alice")
    view = psm.get(uuid)
    assert view["abort_requested"] and view["state"] == "Running"
    want = ["Aborting", "Aborting" if l1 else "NotRun", "NotRun"]
    assert [c["state"] for c in view["batches"][0]["contexts"]] == want
    for c in (c0, c1, c2):
        last = by_id(psm, uuid, c["uuid"])[-1]
        assert (last["reason"], last["actor"]) == ("user_abort", "alice")
    assert psm.renew(l0).aborting
    psm.abort(uuid)  # asking again while it is stopping changes nothing
    assert psm.get(uuid)["batches"][0]["contexts"][0]["state"] == "Aborting"
    psm.context_finished(l0, Status.ABORTED)
    if l1:
        psm.context_finished(l1, Status.SUCCESS)  # raced the abort: recorded as it was
    view = check_pipeline(psm, uuid)
    assert view["batches"][0]["status"] == "Aborted"
    assert view["batches"][1]["state"] == "NotRun"
    assert by_id(psm, uuid, "1")[-1]["reason"] == "user_abort"
    assert (view["state"], view["status"]) == ("Complete", "Aborted")
    refused(psm, uuid, lambda: psm.abort(uuid))
    check_log(psm)


def test_abort_during_auction_completes_at_once(psm: Any) -> None:
    uuid, _ = started(psm, ("Fanout", [2, 1]), ("Linear", [1]))
    psm.abort(uuid)
    view = check_pipeline(psm, uuid)
    assert (view["state"], view["status"]) == ("Complete", "Aborted")
    assert [b["state"] for b in view["batches"]] == ["Complete", "NotRun"]
    assert all(c["state"] == "NotRun" for b in view["batches"] for c in b["contexts"])
    assert psm.open_contexts() == []


def test_abort_of_last_batch_whose_contexts_all_finish(psm: Any) -> None:
    # Every running context reports Success after the abort: nothing was skipped, so the
    # rule in flow.complete_pipeline does not add Aborted.
    uuid, _ = started(psm, ("Parallel", [0, 0]))
    award_all(psm, uuid)
    leases = [psm.claim(c["uuid"], ORCH) for c in contexts(psm, uuid)]
    psm.abort(uuid)
    for lease in leases:
        psm.context_finished(lease, Status.SUCCESS)
    view = check_pipeline(psm, uuid)
    assert (view["state"], view["status"], view["abort_requested"]) == ("Complete", "Success", True)


def test_abort_unknown_pipeline(psm: Any) -> None:
    with pytest.raises(NotFound):
        psm.abort("00000000-0000-4000-8000-000000000000")


# -- terminal states, leases ----------------------------------------------------------


def test_terminal_states_are_absorbing(psm: Any) -> None:
    uuid, _ = started(psm, ("Fanout", [2, 1]))
    award_all(psm, uuid)
    c0, c1 = contexts(psm, uuid)
    l0, l1 = psm.claim(c0["uuid"], ORCH), psm.claim(c1["uuid"], ORCH)
    s0, s1 = (s["uuid"] for s in c0["steps"])
    psm.step_started(l0, s0)
    psm.step_finished(l0, s0, exit_code=0)
    psm.context_finished(l0, Status.SUCCESS)
    # c0 is terminal, the run goes on: every report about c0 or its steps is refused.
    for call in [
        lambda: psm.step_started(l0, s1),
        lambda: psm.step_finished(l0, s0, exit_code=1),
        lambda: psm.context_finished(l0, Status.FAILED),
        lambda: psm.renew(l0),
        lambda: psm.claim(c0["uuid"], ORCH),
        lambda: psm.award(c0["uuid"], "other"),
        lambda: psm.fail_context(c0["uuid"], "provisioning_failed", "orch"),
    ]:
        refused(psm, uuid, call)
    psm.context_finished(l1, Status.SUCCESS)
    assert psm.get(uuid)["state"] == "Complete"
    log = all_transitions(psm)
    for call in [
        lambda: psm.step_started(l1, c1["steps"][0]["uuid"]),
        lambda: psm.context_finished(l1, Status.FAILED),
        lambda: psm.renew(l1),
        lambda: psm.abort(uuid),
        lambda: psm.fail_context(c1["uuid"], "x", "y"),
        lambda: psm.claim(c1["uuid"], ORCH),
    ]:
        refused(psm, uuid, call)
    assert psm.expire_leases(now=time.time() + 3600) == 0
    assert all_transitions(psm) == log


def test_step_reports_out_of_order_are_refused(psm: Any) -> None:
    from otto.psm import IllegalTransition

    uuid, _ = started(psm, ("Linear", [2]))
    award_all(psm, uuid)
    ctx = contexts(psm, uuid)[0]
    lease = psm.claim(ctx["uuid"], ORCH)
    s0 = ctx["steps"][0]["uuid"]
    refused(psm, uuid, lambda: psm.step_finished(lease, s0, exit_code=0), IllegalTransition)
    psm.step_started(lease, s0)
    refused(psm, uuid, lambda: psm.step_started(lease, s0), IllegalTransition)
    psm.step_finished(lease, s0, exit_code=0)
    refused(psm, uuid, lambda: psm.step_finished(lease, s0, exit_code=1), IllegalTransition)
    other = "00000000-0000-4000-8000-000000000000"
    refused(psm, uuid, lambda: psm.step_started(lease, other), NotFound)


def test_stale_epoch_is_refused(psm: Any) -> None:
    uuid, _ = started(psm, ("Linear", [1]))
    award_all(psm, uuid)
    ctx = contexts(psm, uuid)[0]
    lease = psm.claim(ctx["uuid"], ORCH)
    assert lease.epoch == 1 and lease.orchestrator == ORCH and lease.pipeline == uuid
    step = ctx["steps"][0]["uuid"]
    for epoch in (lease.epoch - 1, lease.epoch + 1):
        stale = Lease(uuid, ctx["uuid"], ORCH, epoch, lease.expires_at)
        for call in [
            lambda s=stale: psm.step_started(s, step),
            lambda s=stale: psm.step_finished(s, step, exit_code=0),
            lambda s=stale: psm.context_finished(s, Status.SUCCESS),
            lambda s=stale: psm.renew(s),
        ]:
            refused(psm, uuid, call, StaleLease)
    expires = lease_of(psm, ctx["uuid"]).expires_at
    refused(psm, uuid, lambda: psm.renew(Lease(uuid, ctx["uuid"], ORCH, 7, 0)), StaleLease)
    assert lease_of(psm, ctx["uuid"]).expires_at == expires  # not extended either
    psm.context_finished(lease, Status.SUCCESS)
    assert psm.get(uuid)["status"] == "Success"


def test_a_lease_of_an_earlier_attempt_is_stale_after_a_retry(psm: Any) -> None:
    uuid, _ = started(psm, ("Parallel", [1]))
    award_all(psm, uuid)
    ctx = contexts(psm, uuid)[0]
    step = ctx["steps"][0]["uuid"]
    first = psm.claim(ctx["uuid"], ORCH)
    psm.context_finished(first, Status.ERROR)
    assert psm.get(uuid)["status"] == "Error"
    psm.retry(uuid)
    award_all(psm, uuid, "orch-2")
    second = psm.claim(ctx["uuid"], "orch-2")
    assert (first.epoch, second.epoch) == (1, 2)
    assert contexts(psm, uuid)[0]["attempt"] == 2
    # The agent of attempt 1 wakes up: every report it makes is refused, nothing changes.
    for call in [
        lambda: psm.step_started(first, step),
        lambda: psm.step_finished(first, step, exit_code=0),
        lambda: psm.context_finished(first, Status.SUCCESS),
        lambda: psm.renew(first),
    ]:
        refused(psm, uuid, call, StaleLease)
    psm.step_started(second, step)
    psm.step_finished(second, step, exit_code=0)
    psm.context_finished(second, Status.SUCCESS)
    assert psm.get(uuid)["status"] == "Success"
    check_log(psm)


def test_renew_extends_the_lease(open_psm: Any) -> None:
    psm = open_psm(lease_seconds=5.0)
    uuid, _ = started(psm, ("Linear", [1]))
    award_all(psm, uuid)
    ctx = contexts(psm, uuid)[0]
    lease = psm.claim(ctx["uuid"], ORCH)
    assert psm.next_deadline() == pytest.approx(lease.expires_at)
    time.sleep(0.01)
    renewed = psm.renew(lease)
    assert renewed.expires_at > lease.expires_at and not renewed.aborting
    assert psm.next_deadline() == pytest.approx(renewed.expires_at)
    assert psm.expire_leases(now=lease.expires_at) == 0  # the renewal moved the deadline
    psm.context_finished(renewed, Status.SUCCESS)
    assert psm.next_deadline() is None


def test_lease_expiry_is_agent_lost(open_psm: Any) -> None:
    psm = open_psm(lease_seconds=0.2)
    # No automatic retry (`retry_on = ''`; tests/psm/test_auto_retry.py has the default).
    uuid = psm.create(make_pipeline(("Linear", [2, 1]), ("Parallel", [1]), retry_on="")).uuid
    award_all(psm, uuid)
    ctx = contexts(psm, uuid, batch=0)[0]
    lease = psm.claim(ctx["uuid"], ORCH)
    psm.step_started(lease, ctx["steps"][0]["uuid"])
    assert psm.expire_leases(now=lease.expires_at - 0.1) == 0
    assert psm.get(uuid)["batches"][0]["contexts"][0]["state"] == "Running"
    time.sleep(0.25)
    assert psm.expire_leases() == 1
    view = check_pipeline(psm, uuid)
    c = view["batches"][0]["contexts"][0]
    assert c["state"] == "Error"
    assert [s["state"] for s in c["steps"]] == ["Error", "NotRun"]
    last = by_id(psm, uuid, ctx["uuid"])[-1]
    assert (last["to_state"], last["reason"], last["actor"]) == ("Error", "agent_lost", "psm")
    assert view["batches"][0]["contexts"][1]["state"] == "NotRun"  # Linear stops
    assert (view["state"], view["status"]) == ("Complete", "Error")
    refused(psm, uuid, lambda: psm.context_finished(lease, Status.SUCCESS))  # the lost agent
    assert psm.expire_leases(now=time.time() + 60) == 0
    check_log(psm)


def test_lease_expiry_of_several_fanout_siblings_at_once(psm: Any) -> None:
    # The first expiry aborts its Running siblings; the others must still expire in the
    # same pass (not fail on a stale row and block every later expiry).
    uuid = psm.create(make_pipeline(("Fanout", [1, 1, 1]), retry_on="")).uuid
    other = psm.create(make_pipeline(("Parallel", [0, 0]), retry_on="")).uuid
    leases = []
    for p in (uuid, other):
        award_all(psm, p)
        leases += [psm.claim(c["uuid"], ORCH) for c in contexts(psm, p)]
    assert psm.expire_leases(now=max(lease.expires_at for lease in leases)) == 5
    # Fanout: the first lost context is the cause (Error); its siblings were being
    # aborted because of it when their leases ran out, so they end Aborted.
    fanout = check_pipeline(psm, uuid)
    assert [c["state"] for c in fanout["batches"][0]["contexts"]] == ["Error", "Aborted", "Aborted"]
    parallel = check_pipeline(psm, other)
    assert [c["state"] for c in parallel["batches"][0]["contexts"]] == ["Error", "Error"]
    for view in (fanout, parallel):
        assert (view["state"], view["status"]) == ("Complete", "Error")
    check_log(psm)


def test_lease_of_an_aborting_context_expires_too(psm: Any) -> None:
    uuid, _ = started(psm, ("Parallel", [0]))
    award_all(psm, uuid)
    lease = psm.claim(contexts(psm, uuid)[0]["uuid"], ORCH)
    psm.abort(uuid)
    assert psm.expire_leases(now=lease.expires_at) == 1
    view = check_pipeline(psm, uuid)
    # It was being aborted anyway: losing its agent ends it Aborted, the run with it.
    assert view["batches"][0]["contexts"][0]["state"] == "Aborted"
    last = by_id(psm, uuid, view["batches"][0]["contexts"][0]["uuid"])[-1]
    assert last["reason"] == "agent_lost"
    assert view["status"] == "Aborted"


# -- provisioning failures, release ------------------------------------------------------


def test_fail_context_before_it_starts(psm: Any) -> None:
    uuid, _ = started(psm, ("Fanout", [1, 1]), ("Linear", [1]))
    award_all(psm, uuid)
    c0, _c1 = contexts(psm, uuid, batch=0)
    later = contexts(psm, uuid, batch=1)[0]
    # A context of a batch that has not started cannot have failed to provision.
    refused(psm, uuid, lambda: psm.fail_context(later["uuid"], "provisioning_failed", "o"))
    psm.fail_context(c0["uuid"], "provisioning_failed", "orch-x")
    view = check_pipeline(psm, uuid)
    assert [c["state"] for c in view["batches"][0]["contexts"]] == ["Error", "NotRun"]
    last = by_id(psm, uuid, c0["uuid"])[-1]
    assert (last["from_state"], last["reason"], last["actor"]) == (
        "Pending",
        "provisioning_failed",
        "orch-x",
    )
    assert (view["state"], view["status"]) == ("Complete", "Error")
    with pytest.raises(NotFound):
        psm.fail_context("00000000-0000-4000-8000-000000000000", "x", "y")


@pytest.mark.parametrize("mode", ["Parallel", "Linear"])
def test_failing_the_last_unawarded_context_closes_the_auction(psm: Any, mode: str) -> None:
    # Every other context is awarded: the auction must not wait for the failed one.
    uuid, _ = started(psm, (mode, [0, 0]))
    c0, c1 = contexts(psm, uuid)
    psm.award(c0["uuid"], ORCH)
    psm.fail_context(c1["uuid"], "provisioning_failed", "orch-x")
    assert psm.get(uuid)["batches"][0]["state"] == "Provisioning"
    run_context(psm, contexts(psm, uuid)[0])
    view = check_pipeline(psm, uuid)
    assert [c["state"] for c in view["batches"][0]["contexts"]] == ["Success", "Error"]
    assert (view["state"], view["status"]) == ("Complete", "Error")
    check_log(psm)


def test_release_gives_a_context_back(psm: Any) -> None:
    uuid, _ = started(psm, ("Parallel", [0, 0]))
    c0, c1 = contexts(psm, uuid)
    psm.award(c0["uuid"], "a")
    psm.release(c0["uuid"], "a")
    assert {c["uuid"] for c in psm.open_contexts()} == {c0["uuid"], c1["uuid"]}
    award_all(psm, uuid, "b")
    assert psm.open_contexts() == []
    refused(psm, uuid, lambda: psm.claim(c0["uuid"], "a"))
    view = drive(psm, uuid)
    assert view["status"] == "Success"
    assert {c["orchestrator"] for c in view["batches"][0]["contexts"]} == {"b"}


# -- creation, dedup, empty pipelines --------------------------------------------------------


def test_empty_pipeline_completes_success(psm: Any) -> None:
    uuid, _ = started(psm)
    view = check_pipeline(psm, uuid)
    assert (view["state"], view["status"], view["batches"]) == ("Complete", "Success", [])
    log = by_id(psm, uuid, uuid)
    assert [(t["from_state"], t["to_state"]) for t in log] == [
        (None, "Pending"),
        ("Pending", "Running"),
        ("Running", "Complete"),
    ]


def test_empty_batches_and_contexts_without_steps(psm: Any) -> None:
    uuid, _ = started(psm, ("Linear", []), ("Fanout", [0]), ("Parallel", []))
    view = psm.get(uuid)
    assert (view["batches"][0]["state"], view["batches"][0]["status"]) == ("Complete", "Success")
    assert view["batches"][1]["state"] == "AuctionStarted"
    view = drive(psm, uuid)
    assert [(b["state"], b["status"]) for b in view["batches"]] == [("Complete", "Success")] * 3
    assert (view["state"], view["status"]) == ("Complete", "Success")
    check_log(psm)


def test_dedup_by_repo_and_sha(psm: Any) -> None:
    where = {"repo": "github.com/x/y", "ref": "refs/heads/main", "sha": "a" * 40}
    first = psm.create(make_pipeline(("Linear", [1])), **where)
    seq = all_transitions(psm)[-1]["seq"]
    again = psm.create(make_pipeline(("Linear", [1])), **where)
    assert (again.uuid, again.duplicate) == (first.uuid, True)
    assert all_transitions(psm)[-1]["seq"] == seq  # nothing written
    forced = psm.create(make_pipeline(("Linear", [1])), force=True, **where)
    assert not forced.duplicate and forced.uuid != first.uuid
    other_sha = psm.create(make_pipeline(("Linear", [1])), **{**where, "sha": "b" * 40})
    assert not other_sha.duplicate
    other_repo = psm.create(make_pipeline(("Linear", [1])), **{**where, "repo": "r2"})
    assert not other_repo.duplicate
    no_commit = [psm.create(make_pipeline()) for _ in range(2)]
    assert all(not c.duplicate for c in no_commit)
    view = psm.get(first.uuid)
    assert (view["repo"], view["ref"], view["sha"]) == (where["repo"], where["ref"], where["sha"])
    created = by_id(psm, first.uuid, first.uuid)[0]
    assert created["from_state"] is None and created["reason"] == "created"


def test_duplicate_uuids_are_refused_and_nothing_is_written(psm: Any) -> None:
    model = make_pipeline(("Linear", [1]))
    psm.create(model)
    seq = all_transitions(psm)[-1]["seq"]
    with pytest.raises(Conflict):
        psm.create(model)
    clash = make_pipeline(("Linear", [1]))
    clash.batches[0].contexts[0] = model.batches[0].contexts[0]  # a context uuid in use
    with pytest.raises(Conflict):
        psm.create(clash)
    assert all_transitions(psm)[-1]["seq"] == seq
    with pytest.raises(NotFound):
        psm.get(clash.uuid)
    check_log(psm)


def test_model_is_stored_whole(psm: Any) -> None:
    model = make_pipeline(("Fanout", [2, 0]), ("Linear", [1]))
    uuid = psm.create(model).uuid
    assert psm.get(uuid)["model"] == model.to_dict()


# -- the log ---------------------------------------------------------------------------------


def test_transitions_carry_actor_and_reason(psm: Any) -> None:
    uuid, _ = started(psm, ("Fanout", [1, 0]), actor="webhook")
    award_all(psm, uuid, "orch-7")
    c0, c1 = contexts(psm, uuid)
    lease = psm.claim(c0["uuid"], "orch-7")
    psm.step_started(lease, c0["steps"][0]["uuid"])
    psm.step_finished(lease, c0["steps"][0]["uuid"], exit_code=1)
    psm.context_finished(lease, Status.FAILED, reason="script_failed")
    log = psm.transitions(uuid)
    assert all(t.actor for t in log)
    assert log[0].actor == "webhook" and log[0].reason == "created"
    claimed = [t for t in log if t.id == c0["uuid"] and t.to_state == "Running"]
    assert (claimed[0].actor, claimed[0].reason) == ("orch-7", "claimed")
    assert claimed[0].data == {"orchestrator": "orch-7", "attempt": 1}
    failed = next(t for t in log if t.id == c0["uuid"] and t.to_state == "Failed")
    assert (failed.actor, failed.reason, failed.status) == ("orch-7", "script_failed", "Failed")
    sibling = next(t for t in log if t.id == c1["uuid"])
    assert (sibling.to_state, sibling.reason) == ("NotRun", "fanout_sibling_failed")
    finished = next(t for t in log if t.entity == "step" and t.to_state == "Failed")
    assert finished.data == {"exit_code": 1}
    d = log[-1].to_dict()
    assert set(d) == {"seq", "pipeline", "entity", "id", "from", "to", "status", "reason"} | {
        "actor",
        "at",
        "data",
    }
    assert (d["entity"], d["to"], d["status"]) == ("pipeline", "Complete", "Failed")


def test_seq_is_global_gap_free_and_ordered(psm: Any) -> None:
    uuids = [started(psm, ("Parallel", [1, 1]), ("Linear", [1]))[0] for _ in range(3)]
    for u in uuids:
        award_all(psm, u)
    # Interleave the pipelines, with refusals in between (they must not burn numbers).
    for i in range(2):
        for u in uuids:
            ctx = contexts(psm, u, batch=0)[i]
            with pytest.raises(Conflict):
                psm.claim(ctx["uuid"], "nobody")
            run_context(psm, ctx)
    for u in uuids:
        drive(psm, u)
    log = check_log(psm)
    assert {t["pipeline"] for t in log} == set(uuids)
    for u in uuids:
        mine = [t.seq for t in psm.transitions(u)]
        assert mine == sorted(mine)


# -- views -----------------------------------------------------------------------------------


def test_views(psm: Any) -> None:
    made = []
    for i in range(7):
        repo = "r-even" if i % 2 == 0 else "r-odd"
        made.append(psm.create(make_pipeline(("Linear", [1])), repo=repo, ref=f"ref{i % 3}").uuid)
        time.sleep(0.002)
    drive(psm, made[0])
    drive(psm, made[3])

    page, cursor = psm.list()
    assert [p["uuid"] for p in page] == made[::-1]  # newest first
    assert cursor is None
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = psm.list(limit=3, cursor=cursor)
        seen += [p["uuid"] for p in page]
        pages += 1
        if cursor is None:
            break
    assert seen == made[::-1] and pages == 3
    assert {p["uuid"] for p in psm.list(state="Complete")[0]} == {made[0], made[3]}
    assert {p["uuid"] for p in psm.list(state="Running")[0]} == set(made) - {made[0], made[3]}
    assert [p["uuid"] for p in psm.list(repo="r-odd")[0]] == [made[5], made[3], made[1]]
    assert [p["uuid"] for p in psm.list(repo="r-even", ref="ref0")[0]] == [made[6], made[0]]
    page, cursor = psm.list(repo="r-even", limit=1)
    page2, _ = psm.list(repo="r-even", limit=1, cursor=cursor)
    assert [p["uuid"] for p in page + page2] == [made[6], made[4]]
    assert psm.list(repo="nope") == ([], None)
    with pytest.raises(ValueError):
        psm.list(cursor="not a cursor")

    view = psm.get(made[0])
    assert view["state"] == "Complete" and view["status"] == "Success"
    assert view["created_at"] and view["updated_at"] >= view["created_at"]
    b = view["batches"][0]
    assert (b["index"], b["mode"], b["state"], b["status"]) == (0, "Linear", "Complete", "Success")
    c = b["contexts"][0]
    assert (c["name"], c["orchestrator"], c["attempt"]) == ("b0c0", ORCH, 1)
    assert c["started_at"] and c["finished_at"]
    assert c["steps"][0]["symbol"] == "sh" and c["steps"][0]["exit_code"] == 0

    log = psm.transitions(made[0])
    assert log and all(t.pipeline == made[0] for t in log)
    assert [t.seq for t in log] == sorted(t.seq for t in log)
    for call in (psm.get, psm.transitions):
        with pytest.raises(NotFound):
            call("00000000-0000-4000-8000-000000000000")
    assert psm.transitions(made[1])[-1].entity == "batch"  # still at its auction


def test_where_a_run_came_from_and_the_views_over_it(psm: Any) -> None:
    """`about` is stored and shown; runs filter by project and status; the newest run of
    each of a project's refs (the dashboard's projects page)."""
    made = {}
    for name, project, ref in (
        ("a-main-old", "a", "refs/heads/main"),
        ("b-main", "b", "refs/heads/main"),
        ("a-topic", "a", "refs/heads/topic"),
        ("a-main-new", "a", "refs/heads/main"),
    ):
        about = About(project, f"push by {name}", f"commit {name}")
        made[name] = psm.create(make_pipeline(("Linear", [1])), ref=ref, about=about).uuid
        time.sleep(0.002)
    drive(psm, made["a-topic"])

    view = psm.get(made["a-main-new"])
    assert (view["project"], view["trigger"], view["message"]) == (
        "a",
        "push by a-main-new",
        "commit a-main-new",
    )
    assert [p["uuid"] for p in psm.list(project="a")[0]] == [
        made["a-main-new"],
        made["a-topic"],
        made["a-main-old"],
    ]
    assert [p["uuid"] for p in psm.list(status="Success")[0]] == [made["a-topic"]]
    assert [p["uuid"] for p in psm.list(project="a", ref="refs/heads/main", limit=1)[0]] == [
        made["a-main-new"]
    ]
    latest = psm.latest_by_ref("a")
    assert [(p["ref"], p["uuid"]) for p in latest] == [
        ("refs/heads/main", made["a-main-new"]),
        ("refs/heads/topic", made["a-topic"]),
    ]
    assert psm.latest_by_ref("nobody") == []


def test_open_contexts_lists_only_live_unawarded(psm: Any) -> None:
    uuid, _ = started(psm, ("Parallel", [0, 0]), ("Parallel", [0]))
    first = contexts(psm, uuid, batch=0)
    opened = psm.open_contexts()
    assert [c["uuid"] for c in opened] == [c["uuid"] for c in first]
    assert {(c["pipeline"], c["batch"]) for c in opened} == {(uuid, 0)}
    psm.award(first[0]["uuid"], ORCH)
    assert [c["uuid"] for c in psm.open_contexts()] == [first[1]["uuid"]]


def test_restart_keeps_everything(open_psm: Any, store_url: str) -> None:
    psm = open_psm(lease_seconds=60)
    uuid, _ = started(psm, ("Fanout", [1, 1]), ("Linear", [1]))
    award_all(psm, uuid)
    c0, _c1 = contexts(psm, uuid, batch=0)
    lease = psm.claim(c0["uuid"], ORCH)
    psm.step_started(lease, c0["steps"][0]["uuid"])
    before = (psm.get(uuid), all_transitions(psm), psm.next_deadline())
    psm.close()

    again = open_psm(lease_seconds=60)
    assert (again.get(uuid), all_transitions(again), again.next_deadline()) == before
    assert again.events.last_seq == before[1][-1]["seq"]
    again.step_finished(lease, c0["steps"][0]["uuid"], exit_code=0)  # the old lease still works
    again.context_finished(lease, Status.SUCCESS)
    view = drive(again, uuid)
    assert view["status"] == "Success"
    check_log(again)
