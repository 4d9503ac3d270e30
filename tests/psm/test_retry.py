"""Retry: a finished run's failed, errored, aborted and skipped contexts run again."""

from __future__ import annotations

import pytest
from psmkit import drive, make_pipeline

from otto.psm import Conflict, PipelineStateMachine
from otto.psm.states import ALLOWED, RETRY, RETRY_ALLOWED, Entity


def test_retry_reruns_what_failed_and_keeps_what_succeeded(psm: PipelineStateMachine) -> None:
    model = make_pipeline(("Linear", [1]), ("Fanout", [1, 1]), ("Linear", [1]))
    psm.create(model)
    target = model.batches[1].contexts[0].uuid

    first = drive(psm, model.uuid, code=lambda s: 1 if s["context"] == target else 0)
    assert (first["state"], first["status"]) == ("Complete", "Failed")
    states = [[c["state"] for c in b["contexts"]] for b in first["batches"]]
    assert states[0] == ["Success"] and states[2] == ["NotRun"]

    retried = psm.retry(model.uuid)
    assert set(retried) == {
        c["uuid"] for b in first["batches"][1:] for c in b["contexts"] if c["state"] != "Success"
    }
    view = psm.get(model.uuid)
    assert view["state"] == "Running"
    assert [b["state"] for b in view["batches"]] == ["Complete", "AuctionStarted", "Pending"]

    final = drive(psm, model.uuid)
    assert (final["state"], final["status"]) == ("Complete", "Success")
    by_name = {c["name"]: c for b in final["batches"] for c in b["contexts"]}
    assert by_name["b0c0"]["attempt"] == 1  # what succeeded was kept, not re-run
    assert by_name["b1c0"]["attempt"] == 2  # the failed one ran again

    # Every transition is in the table, or a retry move taken with reason `retry`.
    for t in psm.transitions(model.uuid):
        if t.from_state is None:
            continue
        entity = Entity(t.entity)
        allowed = ALLOWED[entity][t.from_state]
        if t.reason == RETRY:
            allowed = allowed | RETRY_ALLOWED[entity].get(t.from_state, frozenset())
        assert t.to_state in allowed, t


def test_retry_is_refused_while_running_or_with_nothing_to_retry(
    psm: PipelineStateMachine,
) -> None:
    model = make_pipeline(("Linear", [1]))
    psm.create(model)
    with pytest.raises(Conflict, match="still Running"):
        psm.retry(model.uuid)
    drive(psm, model.uuid)
    before = psm.transitions(model.uuid)
    with pytest.raises(Conflict, match="nothing to retry"):
        psm.retry(model.uuid)
    assert psm.transitions(model.uuid) == before


def test_terminal_states_leave_only_by_retry(psm: PipelineStateMachine) -> None:
    model = make_pipeline(("Linear", [1]))
    psm.create(model)
    final = drive(psm, model.uuid, code=lambda s: 1)
    ctx = final["batches"][0]["contexts"][0]
    with pytest.raises(Conflict):
        psm.claim(ctx["uuid"], "o")  # a Failed context does not run again by itself
    psm.retry(model.uuid)
    assert drive(psm, model.uuid)["status"] == "Success"


def test_a_rejected_run_is_visible_and_complete_with_error(psm: PipelineStateMachine) -> None:
    model = make_pipeline()
    message = "Ottofile:3:5: expected a step name"
    created = psm.create(
        model, repo="r", ref="refs/heads/main", sha="abc", rejected=("config_error", message)
    )
    view = psm.get(created.uuid)
    assert (view["state"], view["status"], view["sha"]) == ("Complete", "Error", "abc")
    rejected = {"reason": "config_error", "message": message}
    assert (view["rejected"], view["batches"]) == (rejected, [])  # nothing of it can run
    assert psm.list()[0][0]["rejected"] == rejected
    assert psm.open_contexts() == []
    last = psm.transitions(created.uuid)[-1]
    assert (last.reason, last.data) == ("config_error", {"message": message})
    with pytest.raises(Conflict, match=r"never ran \(config_error\): nothing to retry"):
        psm.retry(created.uuid)
    assert psm.create(make_pipeline(), repo="r", sha="abc").duplicate  # the commit ran once
    assert psm.get(psm.create(make_pipeline()).uuid)["rejected"] is None


def test_an_abort_carries_its_reason_and_data_to_every_transition(
    psm: PipelineStateMachine,
) -> None:
    model = make_pipeline(("Linear", [1]), ("Linear", [1]))
    psm.create(model)
    first = model.batches[0].contexts[0].uuid
    psm.award(first, "o")
    psm.claim(first, "o")
    psm.abort(model.uuid, actor="webhook:app", reason="superseded", data={"superseded_by": "x"})
    final = drive(psm, model.uuid)  # the running context confirms; later batches never run
    assert (final["status"], final["abort_reason"]) == ("Aborted", "superseded")
    caused = [t for t in psm.transitions(model.uuid) if t.reason == "superseded"]
    moved = {(t.entity, t.to_state) for t in caused}
    assert moved >= {("context", "Aborting"), ("batch", "NotRun"), ("context", "NotRun")}
    assert all(t.data == {"superseded_by": "x"} for t in caused)
