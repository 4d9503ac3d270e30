"""Approval gates enforced by the PSM, on both backends: an input holds its context
Waiting with nothing held (no orchestrator's award offered, no lease), an answer moves it
on and is recorded (who, when, the comment), parameters become run variables, and an
input's timeout is a stored deadline the lease expiry sweeps."""

from __future__ import annotations

from typing import Any

import pytest
from psmkit import ORCH, check_log, check_pipeline, context_row, contexts

from otto.parser import parse
from otto.psm.approvals import Answer, MissingParameters
from otto.psm.errors import Conflict, NotFound
from otto.psm.store import queries
from otto.status import Status

ENTER = """pipeline {
    stage {
        name = 'deploy'
        gates { enter { input message: 'Deploy to production?', parameters: 'version' } }
        steps { sh 'deploy' }
    }
    stage { name = 'after' steps { sh 'true' } }
}
"""

EXIT = """pipeline {
    stage {
        name = 'staging'
        gates { exit { input 'Does staging look good?' timeout = '1h' } }
        steps { sh 'deploy' }
    }
    stage { name = 'after' steps { sh 'true' } }
}
"""


def run_one(psm: Any, ctx: dict[str, Any], outcome: Status = Status.SUCCESS) -> None:
    psm.award(ctx["uuid"], ORCH)
    lease = psm.claim(ctx["uuid"], ORCH)
    for step in ctx["steps"]:
        psm.step_started(lease, step["uuid"])
        psm.step_finished(lease, step["uuid"], exit_code=0)
    psm.context_finished(lease, outcome)


def offered(psm: Any) -> set[str]:
    return {c["uuid"] for c in psm.open_contexts()}


def test_an_enter_input_waits_unoffered_until_approved_with_its_parameters(psm: Any) -> None:
    uuid = psm.create(parse(ENTER)).uuid
    deploy, after = contexts(psm, uuid)
    assert deploy["state"] == "Waiting"
    assert deploy["waiting"] == {"gate": "enter", "message": "Deploy to production?",
                                 "parameters": ["version"], "timeout_at": None}  # fmt: skip
    assert deploy["uuid"] not in offered(psm)
    with pytest.raises(MissingParameters) as missing:
        psm.answer(uuid, "deploy", Answer(True, "alice"))
    assert missing.value.names == ["version"]
    answer = Answer(True, "alice", "looks fine", {"version": "1.2", "other": "x"})
    assert psm.answer(uuid, "deploy", answer) == deploy["uuid"]
    deploy = contexts(psm, uuid)[0]
    assert (deploy["state"], deploy["waiting"]) == ("Pending", None)
    assert deploy["uuid"] in offered(psm)
    approved = [t for t in psm.transitions(uuid) if t.reason == "approved"]
    assert [(t.from_state, t.to_state, t.actor) for t in approved] == [
        ("Waiting", "Pending", "alice")
    ]
    data = approved[0].data
    assert (data["by"], data["comment"], data["params"]) == ("alice", "looks fine",
                                                             {"version": "1.2"})  # fmt: skip
    assert psm.store.read(lambda tx: queries.captured_variables(tx, uuid)) == {"version": "1.2"}
    run_one(psm, deploy)
    run_one(psm, after)
    assert check_pipeline(psm, uuid)["status"] == "Success"
    check_log(psm)


def test_a_rejected_input_fails_the_run(psm: Any) -> None:
    uuid = psm.create(parse(ENTER)).uuid
    with pytest.raises(NotFound):
        psm.answer(uuid, "nowhere", Answer(False))
    with pytest.raises(Conflict, match="after is Pending, not Waiting"):
        psm.answer(uuid, "after", Answer(True))
    psm.answer(uuid, "deploy", Answer(False, "bob", "not today"))
    view = check_pipeline(psm, uuid)
    assert (view["state"], view["status"]) == ("Complete", "Failed")
    assert [c["state"] for c in contexts(psm, uuid)] == ["Failed", "NotRun"]
    (rejected,) = [
        t for t in psm.transitions(uuid) if t.reason == "rejected" and t.entity == "context"
    ]
    assert rejected.data["comment"] == "not today" and rejected.actor == "bob"
    with pytest.raises(Conflict, match="Failed"):
        psm.answer(uuid, "deploy", Answer(True))
    check_log(psm)


def test_an_exit_input_releases_the_lease_then_approval_ends_it_success(psm: Any) -> None:
    uuid = psm.create(parse(EXIT)).uuid
    staging, after = contexts(psm, uuid)
    run_one(psm, staging)
    row = context_row(psm, staging["uuid"])
    assert (row["state"], row["lease_expires"], row["waiting_for"]) == ("Waiting", None, "exit")
    assert row["input_deadline"] is not None
    (hold,) = [t for t in psm.transitions(uuid) if t.reason == "input" and t.entity == "context"]
    assert hold.data["outcome"] == "Success" and hold.from_state == "Running"
    assert after["uuid"] not in offered(psm)  # later batches wait
    psm.answer(uuid, staging["uuid"], Answer(True))
    assert [c["state"] for c in contexts(psm, uuid)] == ["Success", "Pending"]
    assert context_row(psm, staging["uuid"])["input_deadline"] is None
    check_log(psm)


def test_an_unanswered_input_times_out_aborted_even_after_a_restart(open_psm: Any) -> None:
    psm = open_psm()
    uuid = psm.create(parse(EXIT)).uuid
    staging = contexts(psm, uuid)[0]
    run_one(psm, staging)
    deadline = context_row(psm, staging["uuid"])["input_deadline"]
    assert psm.expire_leases(now=deadline - 1) == 0
    psm.close()
    psm = open_psm()  # the deadline is stored
    assert psm.expire_leases(now=deadline + 1) == 1
    view = check_pipeline(psm, uuid)
    assert (view["state"], view["status"]) == ("Complete", "Aborted")
    ends = [(c["state"], c["reason"]) for c in contexts(psm, uuid)]
    assert ends == [("Aborted", "input_timeout"), ("NotRun", None)]
    check_log(psm)


def test_an_abort_ends_a_waiting_context(psm: Any) -> None:
    uuid = psm.create(parse(ENTER)).uuid
    psm.abort(uuid)
    view = check_pipeline(psm, uuid)
    assert (view["state"], view["status"]) == ("Complete", "Aborted")
    ends = [(c["state"], c["reason"]) for c in contexts(psm, uuid)]
    assert ends == [("Aborted", "user_abort"), ("NotRun", None)]
    check_log(psm)
