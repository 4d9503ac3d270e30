"""Sweeps where the workspaces are: a remote orchestrator removes its own workspaces of
completed runs (asking the server), the object store may be S3, and the directories of
killed agents are removed when an orchestrator starts."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from housekeepingkit import QUICK, create, gc, objects_of, run

from otto.agent import workspace
from serverkit import UNSANDBOXED, orchestrator, running_server, wait_for

QUICK_REMOTE = QUICK.replace("name = 'Build'", "name = 'Build' labels = 'remote-only'")


def test_a_remote_orchestrator_sweeps_its_own_workspaces(tmp_path: Path) -> None:
    env = {**UNSANDBOXED, "OTTO_LOCAL_ORCHESTRATOR": "0", "OTTO_WORKSPACE_GRACE": "0"}
    with running_server(tmp_path / "home", **env) as server, server.client() as client:
        os.environ["OTTO_JANITOR_INTERVAL"] = "0.2"  # the orchestrator reads it
        try:
            with orchestrator(server.url, "far", tmp_path / "far", labels="remote-only"):
                root = tmp_path / "far" / "far"
                uuid = run(client, QUICK_REMOTE)["uuid"]
                assert client.get(f"/v1/pipelines/{uuid}").json()["status"] == "Success"
                wait_for(lambda: not (root / uuid).exists(), 10, "the remote workspace to go")
                assert (root / ".cache").is_dir()  # what runs share stays
        finally:
            del os.environ["OTTO_JANITOR_INTERVAL"]
        asked = client.post("/v1/gc/workspaces", json={"pipelines": [uuid, "not-a-run"]})
        assert asked.json() == {"remove": [uuid]}
        bad = client.post("/v1/gc/workspaces", json={"pipelines": "x"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "pipelines"


def test_gc_on_s3(tmp_path: Path, moto_endpoint: str, make_bucket: Callable[[], str]) -> None:
    objects = (
        f"s3://{make_bucket()}/otto?endpoint={moto_endpoint}&region=us-east-1"
        "&access_key=testing&secret_key=testing-secret"
    )
    env = {
        **UNSANDBOXED,
        "OTTO_OBJECTS": objects,
        "OTTO_JANITOR_INTERVAL": "3600",
        "OTTO_RETENTION_DAYS": str(1 / 86400),
    }
    with running_server(tmp_path / "home", **env) as server, server.client() as client:
        old = run(client, QUICK)["uuid"]
        time.sleep(1.2)
        running = create(client, "pipeline { stage { steps { sh 'sleep 30' } } }")
        wait_for(lambda: objects_of(client, running), 30, "the running run's log")
        stored = objects_of(client, old)
        listed = gc(server, dry_run=True)
        assert [(r["pipeline"], r["objects"]) for r in listed["runs"]] == [(old, len(stored))]
        gc(server, dry_run=False)
        assert objects_of(client, old) == [] and objects_of(client, running)
        assert client.get(f"/v1/pipelines/{old}").json()["logs_expired"] is True
        client.post(f"/v1/pipelines/{running}/abort")


def killed_pid() -> int:
    """The PID of a process that was killed (and reaped): no process has it now."""
    gone = subprocess.Popen(["sleep", "60"])
    gone.send_signal(signal.SIGKILL)
    gone.wait()
    return gone.pid


def leftover(parent: str, pid: int, namespace: str | None = None) -> Path:
    """An agent's directory as `otto.agent.workspace` names it, made here."""
    ns = namespace or workspace.pid_namespace()
    directory = Path(parent, f"otto-agent-{ns}-{pid}-{os.urandom(4).hex()}")
    directory.mkdir()
    (directory / "control.sock").write_text("")
    return directory


def test_directories_of_killed_agents_are_swept() -> None:
    gone = killed_pid()
    parents = {workspace.runtime_dir(), tempfile.gettempdir()}
    made = [
        (leftover(p, gone), leftover(p, os.getpid()), leftover(p, gone, namespace="1"))
        for p in parents
    ]
    try:
        assert workspace.remove_leftovers() >= len(parents)
        for dead, alive, elsewhere in made:
            assert not dead.exists() and alive.is_dir() and elsewhere.is_dir()
    finally:
        for directories in made:
            for directory in directories:
                subprocess.run(["rm", "-rf", str(directory)], check=True)


def test_the_server_sweeps_them_at_start(tmp_path: Path) -> None:
    gone = subprocess.Popen(["sleep", "60"])
    gone.send_signal(signal.SIGKILL)
    gone.wait()
    dead = Path(
        workspace.runtime_dir(), f"otto-agent-{workspace.pid_namespace()}-{gone.pid}-0dead0ff"
    )
    dead.mkdir()
    with running_server(tmp_path / "home", **UNSANDBOXED) as server:
        assert httpx.get(f"{server.url}/health").status_code == 200
        wait_for(lambda: not dead.exists(), 10, "the leftover directory to go")
