"""Abort, timeout and leftovers: a step's whole process tree goes, nothing is left behind."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

from agentkit import AgentHarness, alive, context, sh, spec, wait_for

# A step whose shell starts a background child and waits; both record their pids.
TREE = "sleep 300 & echo $! > child.pid; echo $$ > shell.pid; echo started; wait"


def pids(workspace: Path) -> list[int]:
    return [int((workspace / f"{n}.pid").read_text()) for n in ("child", "shell")]


def test_timeout_kills_the_process_tree(harness: AgentHarness) -> None:
    ctx = context(spec("sh", script=TREE, timeout="3"), sh("touch after"))
    out = harness.run(ctx)
    assert out.status == "Failed"
    assert out.result.reason == "timeout"
    step = out.result.steps[0]
    assert (step.status.value, step.reason) == ("Failed", "timeout")
    assert 3 <= out.elapsed < 20
    assert not any(alive(pid) for pid in pids(out.workspace))
    assert not (out.workspace / "after").exists()
    assert "started" in out.log()
    assert "step stopped: timeout" in out.log()


def test_a_process_ignoring_sigterm_gets_sigkill_after_the_grace(harness: AgentHarness) -> None:
    script = "trap '' TERM; echo $$ > shell.pid; sleep 300 & echo $! > child.pid; wait; wait"
    out = harness.run(context(spec("sh", script=script, timeout="3")), kill_grace=0.5)
    assert (out.status, out.result.reason) == ("Failed", "timeout")
    assert out.elapsed < 20
    assert not any(alive(pid) for pid in pids(out.workspace))


def test_background_children_do_not_outlive_their_step(harness: AgentHarness) -> None:
    out = harness.run(context(sh("sleep 300 & echo $! > child.pid; echo $$ > shell.pid")))
    assert out.status == "Success"
    assert out.elapsed < 20
    assert not any(alive(pid) for pid in pids(out.workspace))


def test_sigterm_to_the_agent_aborts_the_running_step(harness: AgentHarness) -> None:
    ctx = context(sh(TREE), sh("touch after"))
    inv = harness.invocation(ctx)
    proc = harness.spawn(inv)
    try:
        wait_for(lambda: (inv.workspace / "shell.pid").exists(), seconds=30)
        tree = wait_for(lambda: (inv.workspace / "child.pid").exists() and pids(inv.workspace))
        assert all(alive(pid) for pid in tree)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2
    assert not any(alive(pid) for pid in tree)
    events = harness.events(inv)
    assert events[-1]["event"] == "context_finished"
    assert (events[-1]["status"], events[-1]["reason"]) == ("Aborted", "aborted")
    finished = [e for e in events if e["event"] == "step_finished"]
    assert [(e["status"], e["reason"]) for e in finished] == [("Aborted", "aborted")]
    assert not (inv.workspace / "after").exists()


def test_abort_from_another_thread(harness: AgentHarness) -> None:
    from otto.agent import Agent, JsonLinesReporter

    ctx = context(sh("echo $$ > shell.pid; exec sleep 300"), sh("touch after"))
    inv = harness.invocation(ctx)
    assert inv.report.path is not None
    with open(inv.report.path, "a") as stream:
        agent = Agent(inv, JsonLinesReporter(stream, inv.pipeline, ctx.uuid))
        results = []
        runner = threading.Thread(target=lambda: results.append(agent.run()))
        runner.start()
        pid_file = inv.workspace / "shell.pid"
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip())
        pid = int(pid_file.read_text())
        start = time.monotonic()
        agent.abort("user_abort")
        runner.join(20)
    assert not runner.is_alive()
    assert time.monotonic() - start < 5
    result = results[0]
    assert (result.status.value, result.reason) == ("Aborted", "user_abort")
    assert not alive(pid)
    assert not (inv.workspace / "after").exists()


def test_a_timeout_on_dir_covers_its_block(harness: AgentHarness) -> None:
    block = [sh("echo $$ > ../shell.pid; sleep 300 & echo $! > ../child.pid; wait")]
    out = harness.run(context(spec("dir", directory="sub", block=block, timeout="3")))
    assert (out.status, out.result.reason) == ("Failed", "timeout")
    assert [s.reason for s in out.result.steps] == ["timeout", "timeout"]
    assert not any(alive(pid) for pid in pids(out.workspace))
