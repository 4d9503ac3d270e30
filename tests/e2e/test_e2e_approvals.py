"""Approval gates end to end, on a real `otto server` with its local orchestrator and
agents: an input holds its context Waiting with nothing held (no agent process, no
lease, no orchestrator capacity), across a kill -9 of the server; `otto approve` and
`otto reject` move it on; an exit input releases the agent before it waits; an input
nobody answers ends Aborted (`input_timeout`) at its gate's timeout."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from serverkit import Server, free_port, start_server, stop_server, wait_for

from .e2ekit import assert_gone, contexts, poll, read_pid, submit, wait_complete

ENTER = """
pipeline {{
    stage {{
        name = 'deploy'
        gates {{ enter {{ input message: 'Deploy to production?', parameters: 'version' }} }}
        steps {{ sh 'echo "$VAR_version" > {out}' }}
    }}
    stage {{ name = 'after' steps {{ sh 'true' }} }}
}}
"""


def otto(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otto.cli", *args, "--server", server.url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def waiting(run: dict[str, Any]) -> bool:
    return any(c["state"] == "Waiting" for b in run["batches"] for c in b["contexts"])


def nothing_held(client: httpx.Client) -> None:
    """No orchestrator runs anything: the waiting context holds no capacity (once its
    orchestrator has seen its agent's end, moments after the context moved on)."""

    def idle() -> list[dict[str, Any]] | None:
        orchestrators = client.get("/v1/orchestrators").json()["orchestrators"]
        return orchestrators if all(o["running"] == 0 for o in orchestrators) else None

    assert wait_for(idle, 10.0, "no orchestrator running anything")


def test_an_enter_input_waits_holding_nothing_across_a_kill_9_then_runs_approved(
    tmp_path: Path,
) -> None:
    home, port, out = tmp_path / "home", free_port(), tmp_path / "version"
    home.mkdir()
    server = start_server(home, port, OTTO_CONCURRENCY="2")
    try:
        with server.client() as c:
            uuid = submit(c, ENTER.format(out=out))
            run = poll(c, uuid, waiting)
            deploy = contexts(run)["deploy"]
            assert deploy["waiting"]["message"] == "Deploy to production?"
            assert (deploy["orchestrator"], deploy["attempt"]) == (None, 0)
            listed = otto(server, "ps")
            (line,) = [x for x in listed.stdout.splitlines() if x.startswith(uuid[:8])]
            assert line.split()[2] == "Waiting", listed.stdout
            nothing_held(c)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        server = start_server(home, port, OTTO_CONCURRENCY="2")
        with server.client() as c:
            assert contexts(poll(c, uuid, waiting))["deploy"]["state"] == "Waiting"
            shown = otto(server, "show", uuid)
            assert "deploy waits before it runs: Deploy to production?" in shown.stdout
            assert f"otto approve {uuid[:8]} --context 'deploy' --param version=" in shown.stdout
            missing = otto(server, "approve", uuid[:8])
            assert missing.returncode != 0 and "version" in missing.stderr, missing
            approved = otto(server, "approve", uuid[:8], "--param", "version=1.2",
                            "--comment", "ship it")  # fmt: skip
            assert approved.returncode == 0, approved.stderr
            run = wait_complete(c, uuid)
            transitions = c.get(f"/v1/pipelines/{uuid}/transitions").json()["transitions"]
    finally:
        stop_server(server)
    assert (run["state"], run["status"]) == ("Complete", "Success"), contexts(run)
    assert out.read_text() == "1.2\n"
    (answer,) = [t for t in transitions if t["reason"] == "approved"]
    assert answer["data"]["comment"] == "ship it" and answer["data"]["params"] == {"version": "1.2"}


def test_a_rejected_input_fails_the_run(server: Server, tmp_path: Path) -> None:
    with server.client() as c:
        uuid = submit(c, ENTER.format(out=tmp_path / "never"))
        poll(c, uuid, waiting)
        refused = c.post(f"/v1/pipelines/{uuid}/contexts/after/approve", json={})
        assert refused.status_code == 409 and refused.json()["error"]["current"] == "Pending"
        base = f"/v1/pipelines/{uuid}/contexts/deploy"
        unknown = c.post(f"/v1/pipelines/{uuid}/contexts/nowhere/reject", json={})
        assert unknown.status_code == 404, unknown.text
        for body, field in [({"params": {}}, "params"), ({"who": "x"}, "who"),
                            ({"comment": "x" * 3000}, "comment")]:  # fmt: skip
            bad = c.post(f"{base}/approve", json=body)
            assert bad.status_code == 422 and bad.json()["error"]["field"] == field, bad.text
        assert "version" in c.post(f"{base}/approve", json={}).json()["error"]["message"]
        odd = c.post(f"{base}/reject", json={"params": {"version": "1"}})
        assert odd.status_code == 422 and odd.json()["error"]["field"] == "params"
        rejected = otto(server, "reject", uuid, "--comment", "not today")
        assert rejected.returncode == 0, rejected.stderr
        run = wait_complete(c, uuid)
    ctx = contexts(run)
    assert (run["status"], ctx["deploy"]["reason"], ctx["after"]["state"]) == (
        "Failed", "rejected", "NotRun"
    )  # fmt: skip
    assert not (tmp_path / "never").exists()


def test_an_exit_input_releases_the_agent_before_it_waits(
    unsandboxed: Server, tmp_path: Path
) -> None:
    pidfile = tmp_path / "agent.pid"
    ottofile = f"""
    pipeline {{
        stage {{
            name = 'staging'
            gates {{ exit {{ input 'Does staging look good?' }} }}
            steps {{ sh 'echo $PPID > {pidfile}' }}
        }}
        stage {{ name = 'production' steps {{ sh 'true' }} }}
    }}
    """
    with unsandboxed.client() as c:
        uuid = submit(c, ottofile)
        agent = read_pid(pidfile)
        assert agent != unsandboxed.process.pid
        run = poll(c, uuid, waiting)
        assert contexts(run)["staging"]["waiting"]["gate"] == "exit"
        assert contexts(run)["production"]["state"] == "Pending"
        assert_gone(agent)
        nothing_held(c)
        answer = c.post(f"/v1/pipelines/{uuid}/contexts/staging/approve", json={"by": "alice"})
        assert answer.status_code == 200, answer.text
        run = wait_complete(c, uuid)
    assert run["status"] == "Success"
    assert [c["state"] for c in contexts(run).values()] == ["Success", "Success"]


def test_an_input_nobody_answers_times_out(server: Server) -> None:
    ottofile = """
    pipeline {
        stage {
            name = 'deploy'
            gates { enter { input 'Deploy?' timeout = '2s' } }
            steps { sh 'true' }
        }
    }
    """
    with server.client() as c:
        uuid = submit(c, ottofile)
        run = wait_complete(c, uuid, seconds=20)
    deploy = contexts(run)["deploy"]
    assert (run["status"], deploy["state"], deploy["reason"]) == (
        "Aborted", "Aborted", "input_timeout"
    )  # fmt: skip


def test_approve_without_context_names_the_waiting_ones_when_several_wait(
    server: Server,
) -> None:
    ottofile = """
    pipeline {
        parallel {
            stage { name = 'eu' gates { enter { input 'EU?' } } steps { sh 'true' } }
            stage { name = 'us' gates { enter { input 'US?' } } steps { sh 'true' } }
        }
    }
    """
    with server.client() as c:
        uuid = submit(c, ottofile)
        poll(c, uuid, lambda run: [x["state"] for x in contexts(run).values()] == ["Waiting"] * 2)
        ambiguous = otto(server, "approve", uuid)
        assert ambiguous.returncode == 64, ambiguous
        assert "2 waiting contexts: eu, us" in ambiguous.stderr
        for name in ("eu", "us"):
            assert otto(server, "approve", uuid, "--context", name).returncode == 0
        assert wait_complete(c, uuid)["status"] == "Success"
