"""The agent's run of a context: environment, order, statuses, reports, workspaces."""

from __future__ import annotations

import json
import subprocess
import uuid

from agentkit import PYTHON, AgentHarness, context, free_port, sh, spec


def test_steps_see_the_otto_environment(harness: AgentHarness) -> None:
    first = sh('echo "$OTTO $CI $OTTO_PIPELINE $OTTO_CONTEXT $OTTO_STEP $GREETING $TOKEN"')
    second = sh('echo "step=$OTTO_STEP"')
    ctx = context(first, second, environment={"GREETING": "hello"})
    out = harness.run(ctx, secrets={"TOKEN": "s3cr3t-t0ken"})
    assert out.status == "Success"
    line = out.log(first).splitlines()[-1]
    assert line == f"true true {harness.pipeline} {ctx.uuid} {first['uuid']} hello ****"
    assert out.log(second).splitlines()[-1] == f"step={second['uuid']}"


def test_stdout_and_stderr_are_interleaved_as_produced(harness: AgentHarness) -> None:
    out = harness.run(context(sh("echo one; echo two >&2; echo three; echo four >&2")))
    assert out.log().splitlines()[1:] == ["one", "two", "three", "four"]


def test_sh_prints_the_command_first(harness: AgentHarness) -> None:
    out = harness.run(context(sh("echo made\n\ntrue")))
    assert out.log() == "+ echo made\n+ true\nmade\n"


def test_exit_code_zero_is_success_any_other_fails_and_ends_it(
    harness: AgentHarness,
) -> None:
    for code, status in [
        (0, "Success"),
        (3, "Failed"),
        (2, "Failed"),
        (1, "Failed"),
        (7, "Failed"),
    ]:
        after = sh("touch after")
        ctx = context(sh(f"exit {code}"), after)
        out = harness.run(ctx)
        assert out.status == status, code
        finished = out.finished()[ctx.steps[0].uuid]
        assert (finished["exit_code"], finished["status"]) == (code, status)
        assert (out.workspace / "after").exists() == (code == 0)
        assert (after["uuid"] in out.started()) == (code == 0)
        assert out.result.steps[0].exit_code == code


def test_reports_carry_pipeline_context_and_lease(harness: AgentHarness) -> None:
    ctx = context(spec("echo", "hi"), sh("exit 1"))
    out = harness.run(ctx, lease={"id": "L1", "epoch": 7})
    kinds = [e["event"] for e in out.events]
    assert kinds == [
        "step_started",
        "step_finished",
        "step_started",
        "step_finished",
        "context_finished",
    ]
    for event in out.events:
        assert event["pipeline"] == harness.pipeline
        assert event["context"] == ctx.uuid
        assert event["lease"] == {"id": "L1", "epoch": 7}
    last = out.events[-1]
    assert (last["status"], last["reason"]) == ("Failed", "exit code 1")
    assert out.events[3]["log"] == f"{harness.pipeline}/{ctx.uuid}/{ctx.steps[1].uuid}.log"
    assert "context Failed: exit code 1" in out.context_log


def test_parallel_contexts_get_their_own_workspaces(harness: AgentHarness) -> None:
    a = harness.run(context(sh("echo a > mine")))
    b = harness.run(context(sh("test ! -e mine && echo b > mine")))
    assert a.status == b.status == "Success"
    assert a.workspace != b.workspace
    assert a.workspace == harness.root / "ws" / harness.pipeline / a.invocation.context.uuid
    assert (a.workspace / "mine").read_text() == "a\n"
    assert (b.workspace / "mine").read_text() == "b\n"


def test_a_rerun_starts_from_a_clean_workspace_and_log(harness: AgentHarness) -> None:
    ctx = context(sh("test ! -e leftover; touch leftover; echo run"))
    first = harness.run(ctx)
    second = harness.run(ctx)
    assert first.status == second.status == "Success"
    assert second.log() == "+ test ! -e leftover; touch leftover; echo run\nrun\n"


def test_echo_and_error_steps(harness: AgentHarness) -> None:
    ctx = context(spec("echo", "all is well"), spec("error", message="it broke"), sh("touch no"))
    out = harness.run(ctx)
    assert out.status == "Failed"
    assert out.log(0) == "all is well\n"
    assert out.log(1) == "it broke\n"
    assert out.result.steps[1].reason == "it broke"
    assert out.result.reason == "it broke"
    assert len(out.result.steps) == 2


def test_agent_main_exit_code_is_the_status(harness: AgentHarness) -> None:
    inv = harness.invocation(context(sh(f"{PYTHON} -m otto.agent.control set-status Unstable")))
    proc = harness.spawn(inv)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert err == b""
    assert [json.loads(x)["event"] for x in out.splitlines()] == []  # reported to the file
    assert harness.events(inv)[-1]["status"] == "Unstable"


def test_agent_reports_to_stdout_without_a_report_path(harness: AgentHarness) -> None:
    inv = harness.invocation(context(sh("echo to the log, not stdout")), report={})
    proc = harness.spawn(inv)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    events = [json.loads(x) for x in out.splitlines()]
    assert [e["event"] for e in events] == ["step_started", "step_finished", "context_finished"]


def test_agent_main_refuses_a_bad_invocation_without_a_traceback(harness: AgentHarness) -> None:
    bad = harness.root / "bad.json"
    bad.write_text('{"pipeline": "not-a-uuid"}')
    for args, code in [
        (["--invocation", str(bad)], 4),
        (["--invocation", str(harness.root / "missing.json")], 4),
        ([], 64),
    ]:
        proc = subprocess.run(
            [PYTHON, "-m", "otto.agent", *args], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == code, proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip()


def test_an_unusable_object_store_is_an_error(harness: AgentHarness) -> None:
    out = harness.run(context(sh("touch ran")), object_store="ftp://example.invalid/x")
    assert out.status == "Error"
    assert "object store" in (out.result.reason or "")
    assert out.events[-1]["event"] == "context_finished"
    assert not (out.workspace / "ran").exists()


def test_context_uuid_must_be_a_uuid(harness: AgentHarness) -> None:
    ctx = context(sh("true"))
    ctx.uuid = "../../escape"
    try:
        harness.invocation(ctx)
    except ValueError as exc:
        assert "uuid" in str(exc).lower()
    else:
        raise AssertionError("a context uuid that is a path was accepted")
    assert uuid.UUID(context().uuid)


def test_an_unreachable_store_is_an_error_not_a_crash(harness: AgentHarness) -> None:
    out = harness.run(context(sh("echo hi")), object_store=f"http://127.0.0.1:{free_port()}")
    assert out.status == "Error"
    assert "storing log" in (out.result.reason or "")
    assert [e["event"] for e in out.events][-1] == "context_finished"
    assert out.finished()[out.invocation.context.steps[0].uuid]["status"] == "Error"
