"""Gate conditions enforced by the PSM, on both backends: a context whose condition is
false when its batch starts is Skipped (reason `condition_false`, the condition and what
it saw on the transition), its steps NotRun, never auctioned, not counted in the status."""

from __future__ import annotations

from typing import Any

from psmkit import ORCH, check_log, check_pipeline, contexts, make_pipeline

from otto.parser import parse
from otto.psm.records import About
from otto.psm.store import queries
from otto.status import Status

GATED = """pipeline {
    stage {
        name = 'build'
        steps { sh 'make' }
    }
    stage {
        name = 'deploy'
        environment { TARGET = 'staging' }
        when { branch == 'main' && env.TARGET == 'staging' }
        steps {
            sh 'deploy'
            sh 'verify'
        }
    }
}
"""


def finish(psm: Any, ctx: dict[str, Any], variables: dict[str, str] | None = None) -> None:
    psm.award(ctx["uuid"], ORCH)
    lease = psm.claim(ctx["uuid"], ORCH)
    psm.context_finished(lease, Status.SUCCESS, variables=variables)


def skips(psm: Any, uuid: str) -> list[Any]:
    return [t for t in psm.transitions(uuid) if t.reason == "condition_false"]


def test_a_false_condition_skips_the_stage(psm: Any) -> None:
    about = About(project="web", event="push")
    uuid = psm.create(parse(GATED), ref="refs/heads/feature", about=about).uuid
    build, deploy = contexts(psm, uuid)
    assert deploy["state"] == "Pending"  # decided when its batch starts, not before
    finish(psm, build)
    view = check_pipeline(psm, uuid)
    assert (view["state"], view["status"]) == ("Complete", "Success")
    deploy = contexts(psm, uuid)[1]
    assert deploy["state"] == "Skipped"
    assert [s["state"] for s in deploy["steps"]] == ["NotRun", "NotRun"]
    (skip,) = [t for t in skips(psm, uuid) if t.entity == "context"]
    assert (skip.from_state, skip.to_state, skip.id) == ("Pending", "Skipped", deploy["uuid"])
    assert skip.data == {
        "condition": "branch == 'main' && env.TARGET == 'staging'",
        "seen": {"branch": "feature", "env.TARGET": "staging"},
    }
    assert [b["status"] for b in view["batches"]] == ["Success", "Success"]
    check_log(psm)


def test_a_true_condition_runs_the_stage(psm: Any) -> None:
    uuid = psm.create(parse(GATED), ref="refs/heads/main", about=About(event="push")).uuid
    build, deploy = contexts(psm, uuid)
    finish(psm, build)
    assert contexts(psm, uuid)[1]["state"] == "Pending"
    finish(psm, deploy)
    assert psm.get(uuid)["status"] == "Success"
    assert skips(psm, uuid) == []


def test_the_triggers_environment_wins_over_the_stages(psm: Any) -> None:
    about = About(event="manual", details={"env": {"TARGET": "production"}})
    uuid = psm.create(parse(GATED), ref="refs/heads/main", about=about).uuid
    finish(psm, contexts(psm, uuid)[0])
    assert contexts(psm, uuid)[1]["state"] == "Skipped"
    (skip,) = [t for t in skips(psm, uuid) if t.entity == "context"]
    assert skip.data["seen"]["env.TARGET"] == "production"


def test_a_first_batch_all_skipped_completes_at_creation(psm: Any) -> None:
    text = """pipeline {
        stage { when { event == 'tag' } steps { sh 'publish' } }
    }"""
    uuid = psm.create(parse(text), ref="refs/heads/main", about=About(event="push")).uuid
    view = check_pipeline(psm, uuid)
    assert (view["state"], view["status"]) == ("Complete", "Success")
    assert contexts(psm, uuid)[0]["state"] == "Skipped"
    assert psm.open_contexts() == []
    check_log(psm)


def test_a_condition_reads_variables_captured_by_earlier_stages(psm: Any) -> None:
    text = """pipeline {
        stage { name = 'probe' steps { sh 'probe' } }
        parallel {
            stage { name = 'one' when { vars.X == '1' } steps { sh 'one' } }
            stage { name = 'two' when { vars.X == '2' } steps { sh 'two' } }
        }
    }"""
    uuid = psm.create(parse(text)).uuid
    finish(psm, contexts(psm, uuid)[0], {"X": "1"})
    states = {c["name"]: c["state"] for c in contexts(psm, uuid)}
    assert states == {"probe": "Success", "one": "Pending", "two": "Skipped"}
    (skip,) = [t for t in skips(psm, uuid) if t.entity == "context"]
    assert skip.data["seen"] == {"vars.X": "1"}


def test_a_retry_leaves_a_skipped_stage_skipped(psm: Any) -> None:
    uuid = psm.create(parse(GATED), ref="refs/heads/feature").uuid
    build = contexts(psm, uuid)[0]
    psm.award(build["uuid"], ORCH)
    psm.context_finished(psm.claim(build["uuid"], ORCH), Status.FAILED)
    assert contexts(psm, uuid)[1]["state"] == "NotRun"  # never reached: not skipped
    psm.retry(uuid)
    finish(psm, contexts(psm, uuid)[0])
    assert contexts(psm, uuid)[1]["state"] == "Skipped"
    psm.retry(uuid, every=True)
    finish(psm, contexts(psm, uuid)[0])
    assert [c["state"] for c in contexts(psm, uuid)] == ["Success", "Skipped"]
    check_pipeline(psm, uuid)
    check_log(psm)


def test_a_snapshot_reads_what_conditions_read_only_when_the_next_batch_has_one(
    psm: Any,
) -> None:
    def snapshot(uuid: str, build: str) -> Any:
        return psm.store.read(lambda tx: queries.run_state(tx, uuid, steps=build))

    plain = psm.create(make_pipeline(("Linear", [1]), ("Linear", [1]))).uuid
    assert snapshot(plain, contexts(psm, plain)[0]["uuid"]).gates is None
    gated = psm.create(parse(GATED), ref="refs/heads/main", about=About(project="web")).uuid
    build, deploy = contexts(psm, gated)
    run = snapshot(gated, build["uuid"])
    assert run.gates is not None and run.gates.trigger.branch == "main"
    assert run.gates.trigger.project == "web"
    held = {c.uuid: c.steps for b in run.batches for c in b.contexts}
    assert [s.uuid for s in held[deploy["uuid"]] or ()] == [s["uuid"] for s in deploy["steps"]]
    finish(psm, build)
    assert snapshot(gated, deploy["uuid"]).gates is None  # no batch left to start
