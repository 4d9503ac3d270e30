"""The control socket, used from real `sh` steps through the shell client."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentkit import CONTROL, PYTHON, AgentHarness, Outcome, context, sh
from otto.agent.workspace import runtime_dir


def test_capture_and_drop_variables(harness: AgentHarness) -> None:
    ctx = context(
        sh(f"{CONTROL} capture VERSION 1.2.3 && {CONTROL} capture other 'a b'"),
        sh('echo "v=$VAR_VERSION o=$VAR_other"'),
        sh(f"{CONTROL} drop VERSION"),
        sh('echo "v=${VAR_VERSION-unset}"'),
    )
    out = harness.run(ctx)
    assert out.status == "Success"
    assert out.log(1).splitlines()[-1] == "v=1.2.3 o=a b"
    assert out.log(3).splitlines()[-1] == "v=unset"
    assert out.result.variables == {"other": "a b"}
    assert "captured variable VAR_VERSION" in out.context_log


def test_set_pipeline_status_makes_the_context_no_better(harness: AgentHarness) -> None:
    ctx = context(sh(f"{CONTROL} set-status unstable"), sh("touch after"))
    out = harness.run(ctx)
    assert out.status == "Unstable"
    assert [s.status.value for s in out.result.steps] == ["Success", "Success"]
    assert (out.workspace / "after").exists()
    assert out.events[-1]["status"] == "Unstable"


def test_a_worse_step_outcome_still_wins(harness: AgentHarness) -> None:
    out = harness.run(context(sh(f"{CONTROL} set-status Unstable; exit 1")))
    assert out.status == "Failed"


def test_terminate_ends_the_context_now(harness: AgentHarness) -> None:
    script = f"{CONTROL} terminate Success 'nothing to do'; sleep 300"
    ctx = context(sh(script), sh("touch after"))
    out = harness.run(ctx)
    assert out.status == "Success"
    assert out.result.reason == "terminated: nothing to do"
    assert out.elapsed < 10
    assert not (out.workspace / "after").exists()
    assert len(out.result.steps) == 1

    failed = harness.run(context(sh(f"{CONTROL} terminate Failed; sleep 300"), sh("true")))
    assert (failed.status, failed.result.reason) == ("Failed", "terminated")


def test_the_socket_is_private_and_needs_the_token(harness: AgentHarness) -> None:
    script = (
        'stat -c %a "$OTTO_CONTROL_SOCKET" "$(dirname "$OTTO_CONTROL_SOCKET")"\n'
        f"OTTO_CONTROL_TOKEN=wrong {CONTROL} set-status Failed || echo refused=$?\n"
        f"{CONTROL} set-status Bogus || echo bad=$?\n"
        f"{CONTROL} nonsense || echo usage=$?"
    )
    out = harness.run(context(sh(script)))
    assert out.status == "Success"
    lines = out.log().splitlines()
    assert "600" in lines and "700" in lines
    assert "refused=1" in lines
    assert "bad=1" in lines
    assert "usage=64" in lines
    assert "otto control: missing or wrong control token" in out.log()


def test_the_client_outside_a_step_says_so() -> None:
    proc = subprocess.run(
        [PYTHON, "-m", "otto.agent.control", "set-status", "Unstable"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=30,
    )
    assert proc.returncode == 1
    assert "not inside an Otto step" in proc.stderr
    assert "Traceback" not in proc.stderr


@dataclass
class Dirs:
    runtime: Path
    temp: Path


@pytest.fixture
def dirs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dirs]:
    """A runtime dir (XDG_RUNTIME_DIR) and a temp dir of the test's own: short paths, for a
    socket path has 107 bytes at most."""
    made = Dirs(Path(tempfile.mkdtemp(prefix="otto-rt-")), Path(tempfile.mkdtemp(prefix="otto-t-")))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(made.runtime))
    monkeypatch.setattr(tempfile, "tempdir", str(made.temp))
    runtime_dir.cache_clear()
    yield made
    runtime_dir.cache_clear()
    shutil.rmtree(made.runtime, ignore_errors=True)
    shutil.rmtree(made.temp, ignore_errors=True)


def socket_of(out: Outcome) -> Path:
    return Path(out.log().split("socket=")[-1].splitlines()[0])


def test_the_socket_lives_in_the_runtime_dir_and_leaves_nothing_behind(
    harness: AgentHarness, dirs: Dirs
) -> None:
    out = harness.run(context(sh('echo "socket=$OTTO_CONTROL_SOCKET"')))
    assert out.status == "Success", out.result.reason
    socket = socket_of(out)
    assert socket.parent.parent == dirs.runtime and socket.name == "control.sock"
    assert list(dirs.runtime.iterdir()) == []  # its directory removed with the run
    assert list(dirs.temp.iterdir()) == []  # no private dir for files: no step asked for one


def test_without_a_runtime_dir_the_socket_goes_to_the_temp_dir(
    dirs: Dirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/nonexistent/otto-test")
    monkeypatch.setattr(os.path, "isdir", lambda path: path == str(dirs.temp))
    assert runtime_dir() == str(dirs.temp)


def test_a_runtime_dir_removed_after_it_was_chosen_falls_back_to_the_temp_dir(
    harness: AgentHarness, dirs: Dirs
) -> None:
    assert runtime_dir() == str(dirs.runtime)
    dirs.runtime.rmdir()  # as logind does when its user logs out
    out = harness.run(context(sh(f'echo "socket=$OTTO_CONTROL_SOCKET"; {CONTROL} capture A b')))
    assert out.status == "Success", out.result.reason
    assert socket_of(out).parent.parent == dirs.temp
    assert out.result.variables == {"A": "b"}
    assert list(dirs.temp.iterdir()) == []
