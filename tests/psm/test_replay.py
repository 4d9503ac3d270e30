"""Replay, on both backends: every state of a run re-derived from its transition log alone
(through the transition table) agrees with the stored states for runs of every shape; a
stored state changed behind the PSM's back, or a log entry the table does not allow, is
reported as a difference naming it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from psmkit import ORCH, award_all, context_row, contexts, drive, finish, make_pipeline

from otto.parser import parse
from otto.psm import NotFound, PipelineStateMachine
from otto.psm.approvals import Answer
from otto.psm.records import About, Transition
from otto.psm.replay import Difference, Verdict
from otto.status import Status

GATED = """pipeline {
    stage { name = 'build' steps { sh 'make' } }
    stage { name = 'deploy' when { branch == 'main' } steps { sh 'deploy' } }
}
"""
ENTER = """pipeline {
    stage {
        name = 'deploy'
        gates { enter { input 'Deploy?' } }
        steps { sh 'deploy' }
    }
}
"""
EXIT = """pipeline {
    stage {
        name = 'staging'
        gates { exit { input 'Staging good?' } }
        steps { sh 'deploy' }
    }
}
"""


def consistent(psm: PipelineStateMachine, uuid: str) -> Verdict:
    """Replay `uuid` with the usual page and with pages of two: both consistent, alike."""
    verdict = psm.replay(uuid)
    assert verdict.consistent, verdict.differences
    assert verdict.transitions == len(psm.transitions(uuid))
    assert psm.replay(uuid, page=2) == verdict
    return verdict


def run_one(psm: PipelineStateMachine, ctx: dict[str, Any]) -> None:
    psm.award(ctx["uuid"], ORCH)
    lease = psm.claim(ctx["uuid"], ORCH)
    for step in ctx["steps"]:
        psm.step_started(lease, step["uuid"])
        psm.step_finished(lease, step["uuid"], exit_code=0)
    psm.context_finished(lease, Status.SUCCESS)


def fails_in(context: str) -> Any:
    return lambda step: 1 if step["context"] == context else 0


def test_runs_of_every_mode_and_outcome_replay_consistent(psm: PipelineStateMachine) -> None:
    linear = make_pipeline(("Linear", [2, 1]), ("Parallel", [1, 2, 0]), ("Fanout", [1, 1]))
    psm.create(linear)
    assert drive(psm, linear.uuid)["status"] == "Success"
    consistent(psm, linear.uuid)

    failing = make_pipeline(("Fanout", [1, 1, 1]), ("Linear", [1]))
    psm.create(failing)
    broken = failing.batches[0].contexts[1].uuid
    assert drive(psm, failing.uuid, code=fails_in(broken))["status"] == "Failed"
    consistent(psm, failing.uuid)

    linear_failure = make_pipeline(("Linear", [1, 1, 1]))
    psm.create(linear_failure)
    first = linear_failure.batches[0].contexts[0].uuid
    assert drive(psm, linear_failure.uuid, code=fails_in(first))["status"] == "Failed"
    consistent(psm, linear_failure.uuid)


def test_an_aborted_run_and_its_retry_replay_consistent(psm: PipelineStateMachine) -> None:
    model = make_pipeline(("Parallel", [2, 1]), ("Linear", [1]))
    psm.create(model)
    award_all(psm, model.uuid)
    running, _ = contexts(psm, model.uuid, batch=0)
    lease = psm.claim(running["uuid"], ORCH)
    psm.step_started(lease, running["steps"][0]["uuid"])
    psm.abort(model.uuid)
    consistent(psm, model.uuid)  # Aborting, not yet confirmed
    finish(psm, running["uuid"])
    assert psm.get(model.uuid)["status"] == "Aborted"
    consistent(psm, model.uuid)

    psm.retry(model.uuid)
    consistent(psm, model.uuid)  # retried, its contexts Pending, awards cleared
    assert drive(psm, model.uuid)["status"] == "Success"
    verdict = consistent(psm, model.uuid)
    assert context_row(psm, running["uuid"])["attempt"] == 2
    assert verdict.transitions > 20


def test_a_live_run_with_an_award_not_yet_claimed_replays_consistent(
    psm: PipelineStateMachine,
) -> None:
    model = make_pipeline(("Linear", [1, 1]))
    psm.create(model)
    award_all(psm, model.uuid)  # the second one awarded too, with no transition
    consistent(psm, model.uuid)
    first, _ = contexts(psm, model.uuid)
    psm.claim(first["uuid"], ORCH)
    consistent(psm, model.uuid)


def test_skipped_waiting_approved_and_lost_contexts_replay_consistent(
    open_psm: Any,
) -> None:
    psm = open_psm(lease_seconds=30.0)
    skipped = psm.create(parse(GATED), ref="refs/heads/feature", about=About(event="push")).uuid
    build, _ = contexts(psm, skipped)
    run_one(psm, build)
    assert [c["state"] for c in contexts(psm, skipped)] == ["Success", "Skipped"]
    consistent(psm, skipped)

    enter = psm.create(parse(ENTER)).uuid
    consistent(psm, enter)  # Waiting
    psm.answer(enter, "deploy", Answer(True, "alice"))
    run_one(psm, contexts(psm, enter)[0])
    consistent(psm, enter)

    exit_gate = psm.create(parse(EXIT)).uuid
    run_one(psm, contexts(psm, exit_gate)[0])
    assert contexts(psm, exit_gate)[0]["state"] == "Waiting"
    consistent(psm, exit_gate)
    psm.answer(exit_gate, "staging", Answer(False, "bob"))
    assert psm.get(exit_gate)["status"] == "Failed"
    consistent(psm, exit_gate)

    lost = make_pipeline(("Parallel", [1, 1]))
    psm.create(lost)
    award_all(psm, lost.uuid)
    gone, handed = contexts(psm, lost.uuid)
    psm.claim(gone["uuid"], ORCH)
    psm.hand_back(psm.claim(handed["uuid"], ORCH))
    assert psm.expire_leases(now=time.time() + 60) == 1
    consistent(psm, lost.uuid)
    ends = [t.to_state for t in psm.transitions(lost.uuid) if t.id == gone["uuid"]]
    assert "Error" in ends  # agent_lost (then retried, where a retry policy says so)


def test_a_run_refused_at_creation_replays_consistent(psm: PipelineStateMachine) -> None:
    model = make_pipeline(("Linear", [1]))
    psm.create(model, rejected=("config_error", "unknown step `shh`"))
    assert psm.get(model.uuid)["status"] == "Error"
    assert consistent(psm, model.uuid).transitions == 2


def tamper(psm: PipelineStateMachine, sql: str, *params: Any) -> None:
    """Change stored rows behind the PSM's back, as a bug or a hand would."""
    assert psm.store.write(lambda tx: tx.run(sql, *params)) == 1


def test_a_tampered_stored_state_is_a_difference_naming_it(psm: PipelineStateMachine) -> None:
    model = make_pipeline(("Linear", [2]), ("Parallel", [1]))
    psm.create(model)
    drive(psm, model.uuid)
    ctx = model.batches[0].contexts[0]
    step = ctx.steps[1].uuid
    tamper(psm, "UPDATE contexts SET state = 'Failed' WHERE uuid = ?", ctx.uuid)
    tamper(psm, "UPDATE steps SET state = 'Aborted' WHERE uuid = ?", step)
    tamper(psm, "UPDATE batches SET status = 'Unstable' WHERE pipeline = ? AND idx = 1", model.uuid)
    tamper(psm, "UPDATE pipelines SET state = 'Running' WHERE uuid = ?", model.uuid)
    verdict = psm.replay(model.uuid)
    assert not verdict.consistent
    assert sorted(verdict.differences, key=lambda d: d.entity) == [
        Difference("batch", "1", "status", "Unstable", "Success"),
        Difference("context", ctx.uuid, "state", "Failed", "Success"),
        Difference("pipeline", model.uuid, "state", "Running", "Complete"),
        Difference("step", step, "state", "Aborted", "Success"),
    ]
    assert psm.replay(model.uuid, page=3) == verdict


def test_a_claims_attempt_and_orchestrator_are_compared(psm: PipelineStateMachine) -> None:
    model = make_pipeline(("Linear", [1, 1]))
    psm.create(model)
    drive(psm, model.uuid)
    first, second = (c.uuid for c in model.batches[0].contexts)
    tamper(psm, "UPDATE contexts SET attempt = 3 WHERE uuid = ?", first)
    tamper(psm, "UPDATE contexts SET orchestrator = 'orch-2' WHERE uuid = ?", second)
    assert psm.replay(model.uuid).differences == [
        Difference("context", first, "attempt", 3, 1),
        Difference("context", second, "orchestrator", "orch-2", ORCH),
    ]


INSERT = (
    "INSERT INTO transitions (seq, pipeline, entity, id, from_state, to_state, status, reason,"
    " actor, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def forge(tx: Any, pipeline: str, entity: str, ident: str, was: str, to: str) -> int:
    """Append a transition to the log by hand, past the table; its seq."""
    record = Transition(tx.next_seq(), pipeline, entity, ident, was, to, None, None, "hand",
                        time.time())  # fmt: skip
    tx.run(INSERT, *record[:-1])
    tx.published.append(record)  # numbered on from it, and published, as the ledger's are
    return record.seq


def test_an_illegal_transition_in_the_log_is_reported_with_its_seq(
    psm: PipelineStateMachine,
) -> None:
    model = make_pipeline(("Linear", [1]))
    psm.create(model)
    drive(psm, model.uuid)
    step = model.batches[0].contexts[0].steps[0].uuid

    def illegal_moves(tx: Any) -> int:
        seq = forge(tx, model.uuid, "step", step, "Success", "Running")
        forge(tx, model.uuid, "step", "ghost", "Pending", "Running")
        return seq

    seq = psm.store.write(illegal_moves)
    verdict = psm.replay(model.uuid)
    illegal, ghost, state = verdict.differences
    assert (ghost.id, ghost.seq) == ("ghost", seq + 1)
    assert ghost.message == "the log moves step ghost, which is not stored"
    assert (illegal.entity, illegal.id, illegal.seq) == ("step", step, seq)
    assert illegal.field == "transition"
    assert illegal.stored == "Success → Running" and illegal.replayed == "Success"
    assert "illegal transition" in (illegal.message or "")
    # Replay follows the log past it: the stored step is not what the log now says.
    assert state == Difference("step", step, "state", "Success", "Running")


def test_a_transition_missing_from_the_log_breaks_the_chain(psm: PipelineStateMachine) -> None:
    model = make_pipeline(("Linear", [1]))
    psm.create(model)
    drive(psm, model.uuid)
    ctx = model.batches[0].contexts[0].uuid
    (claim,) = [t for t in psm.transitions(model.uuid) if t.id == ctx and t.reason == "claimed"]
    tamper(psm, "DELETE FROM transitions WHERE seq = ?", claim.seq)
    differences = psm.replay(model.uuid).differences
    assert [(d.entity, d.id, d.field, d.replayed) for d in differences] == [
        ("context", ctx, "transition", "Pending"),  # the log moves it on from Running
        ("context", ctx, "attempt", 0),  # no claim: no attempt, no orchestrator
    ]
    assert "the log moves it from Running, replay has it Pending" in (differences[0].message or "")


def test_an_unknown_run_is_not_found(psm: PipelineStateMachine) -> None:
    with pytest.raises(NotFound):
        psm.replay("00000000-0000-0000-0000-000000000000")
