"""Hook contexts through a real store, on both backends: a failing stage's rollback runs
and a succeeding one's is Skipped, the run's notifications run after an abort, the run's
status is its own, and a hook's steps are told what it reacts to."""

from __future__ import annotations

from typing import Any

from psmkit import ORCH, award_all, check_log, check_pipeline, drive, finish

from otto.model import Batch, BatchMode, Context, Hook, HookOn, Pipeline, Step
from otto.psm import PipelineStateMachine
from otto.status import Status


def stage(name: str, hook: Hook | None = None) -> Context:
    context = Context(properties={"name": name}, hook=hook)
    context.steps = [Step(context=context.uuid, symbol="sh", parameters=[f"echo {name}"])]
    return context


def deploy_pipeline() -> Pipeline:
    """Build, Deploy; Deploy's rollback; a notice on Deploy's failure and when the run ends."""
    build, deploy = stage("Build"), stage("Deploy")
    hooks = [
        Batch(mode=BatchMode.PARALLEL, contexts=[stage("undo", Hook(on=HookOn.ROLLBACK,
                                                                      of=deploy.uuid))]),
        Batch(mode=BatchMode.PARALLEL, contexts=[
            stage("page", Hook(on=HookOn.FAILURE, of=deploy.uuid)),
            stage("tell", Hook(on=HookOn.COMPLETE)),
        ]),
    ]  # fmt: skip
    return Pipeline(batches=[Batch(contexts=[build]), Batch(contexts=[deploy]), *hooks])


def states(view: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["state"] for b in view["batches"] for c in b["contexts"]}


def test_a_failing_stage_is_rolled_back_and_the_run_keeps_its_outcome(psm: Any) -> None:
    uuid = psm.create(deploy_pipeline()).uuid

    def code(step: dict[str, Any]) -> int:  # Deploy and the notification fail
        return 1 if step["context"] in names("Deploy", "tell") else 0

    def names(*wanted: str) -> set[str]:
        view = psm.get(uuid)
        return {c["uuid"] for b in view["batches"] for c in b["contexts"] if c["name"] in wanted}

    view = drive(psm, uuid, code)
    assert states(view) == {"Build": "Success", "Deploy": "Failed", "undo": "Success",
                            "page": "Success", "tell": "Failed"}  # fmt: skip
    assert view["status"] == "Failed"  # Deploy's failure, not the notification's
    check_pipeline(psm, uuid)
    check_log(psm)


def test_a_succeeding_stage_is_not_rolled_back(psm: Any) -> None:
    uuid = psm.create(deploy_pipeline()).uuid
    view = drive(psm, uuid)
    assert states(view) == {"Build": "Success", "Deploy": "Success", "undo": "Skipped",
                            "page": "Skipped", "tell": "Success"}  # fmt: skip
    assert view["status"] == "Success"
    check_pipeline(psm, uuid)
    check_log(psm)


def test_the_runs_notification_runs_after_an_abort_with_what_it_reacts_to(
    psm: PipelineStateMachine,
) -> None:
    uuid = psm.create(deploy_pipeline()).uuid
    award_all(psm, uuid)
    build = psm.get(uuid)["batches"][0]["contexts"][0]["uuid"]
    psm.claim(build, ORCH)
    psm.abort(uuid)
    assert finish(psm, build) == Status.ABORTED
    view = psm.get(uuid)
    assert view["state"] == "Running"  # its hooks still to run
    assert states(view) == {"Build": "Aborted", "Deploy": "NotRun", "undo": "Skipped",
                            "page": "Skipped", "tell": "Pending"}  # fmt: skip
    award_all(psm, uuid)
    tell = next(c for c in view["batches"][3]["contexts"] if c["name"] == "tell")
    order = psm.claim_work(tell["uuid"], ORCH)
    assert order.variables["OTTO_HOOK"] == "complete"
    assert order.variables["OTTO_HOOK_OUTCOME"] == "Aborted"
    assert order.variables["OTTO_HOOK_STAGE"] == ""
    finish(psm, tell["uuid"])
    view = psm.get(uuid)
    assert view["state"] == "Complete" and view["status"] == "Aborted"
    assert states(view)["tell"] == "Success"
    check_pipeline(psm, uuid)
    check_log(psm)


def test_a_rollback_is_told_which_stage_failed_and_how(psm: PipelineStateMachine) -> None:
    uuid = psm.create(deploy_pipeline()).uuid
    view = drive_until_hooks(psm, uuid)
    undo = view["batches"][2]["contexts"][0]
    order = psm.claim_work(undo["uuid"], ORCH)
    assert {k: v for k, v in order.variables.items() if k.startswith("OTTO_HOOK")} == {
        "OTTO_HOOK": "rollback",
        "OTTO_HOOK_OUTCOME": "Failed",
        "OTTO_HOOK_STAGE": "Deploy",
    }


def drive_until_hooks(psm: PipelineStateMachine, uuid: str) -> dict[str, Any]:
    """Build succeeds, Deploy fails: the run's hooks have been awarded."""
    for name, code in (("Build", 0), ("Deploy", 1)):
        award_all(psm, uuid)
        ctx = next(c for b in psm.get(uuid)["batches"] for c in b["contexts"] if c["name"] == name)
        psm.claim(ctx["uuid"], ORCH)
        finish(psm, ctx["uuid"], lambda step, code=code: code)
    award_all(psm, uuid)
    return psm.get(uuid)


def test_a_retry_runs_the_hooks_again_on_the_new_outcome(psm: PipelineStateMachine) -> None:
    uuid = psm.create(deploy_pipeline()).uuid
    fail_once = iter([0, 1])  # Build, then Deploy fails; all else succeeds
    first = drive(psm, uuid, lambda step: next(fail_once, 0))
    assert states(first)["undo"] == "Success"
    psm.retry(uuid)
    again = drive(psm, uuid)
    assert states(again) == {"Build": "Success", "Deploy": "Success", "undo": "Skipped",
                             "page": "Skipped", "tell": "Success"}  # fmt: skip
    assert again["status"] == "Success"
    check_pipeline(psm, uuid)
    check_log(psm)
