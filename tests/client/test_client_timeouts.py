"""`otto show` says why a step and its context failed: `timeout`."""

from __future__ import annotations

from pathlib import Path

from clientkit import otto, wait_complete

from otto.client import OttoClient
from serverkit import Server

TIMED_OUT = """
pipeline {
    stage {
        name = 'slow'
        steps {
            sh 'sleep 60', timeout: '1s'
            sh 'true'
        }
    }
}
"""


def test_show_says_a_step_timed_out(server: Server, client: OttoClient) -> None:
    uuid = client.create(TIMED_OUT).uuid
    document = wait_complete(client, uuid)
    slow = document["batches"][0]["contexts"][0]  # type: ignore[index]
    assert (slow["reason"], slow["steps"][0]["reason"]) == ("timeout", "timeout")
    assert slow["steps"][1]["reason"] is None  # NotRun: it has no outcome to explain

    shown = otto("show", uuid, server=server)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    context = next(line for line in lines if line.strip().startswith("slow"))
    step = next(line for line in lines if "1. sh" in line)
    assert "Failed: timeout" in context
    assert "Failed: timeout" in step


def test_run_says_a_step_timed_out(tmp_path: Path) -> None:
    (tmp_path / "Ottofile").write_text(TIMED_OUT, encoding="utf-8")
    done = otto("run", "--clean", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    step = next(line for line in done.stdout.splitlines() if "› 1. sh 'sleep 60'" in line)
    assert "Failed: timeout (killed by SIGTERM)" in step, step
