"""SIGTERM: the server stops taking work, hands unfinished contexts back, and a restart
runs them to the end."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from serverkit import free_port, start_server, stop_server

SLOW = """
pipeline {
    stage {
        name = 'slow'
        steps {
            sh 'echo started; until [ -e GATE ]; do sleep 0.05; done'
        }
    }
}
"""


def _wait(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_sigterm_hands_running_contexts_back_and_a_restart_finishes_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    env = {"OTTO_SHUTDOWN_GRACE": "0.5"}
    server = start_server(home, port, **env)
    client = httpx.Client(base_url=server.url, timeout=10)
    gate = tmp_path / "gate"  # the step runs on until the server is gone
    ottofile = SLOW.replace("GATE", str(gate))
    uuid = client.post("/v1/pipelines", json={"ottofile": ottofile}).json()["uuid"]

    def context() -> dict:  # type: ignore[type-arg]
        return client.get(f"/v1/pipelines/{uuid}").json()["batches"][0]["contexts"][0]

    _wait(lambda: context()["steps"][0]["state"] == "Running")
    server.process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert server.process.wait(20) in (0, -signal.SIGTERM)
    gate.touch()

    server = start_server(home, port, **env)
    try:
        client = httpx.Client(base_url=server.url, timeout=10)
        transitions = client.get(f"/v1/pipelines/{uuid}/transitions").json()["transitions"]
        handed = [t for t in transitions if t["reason"] == "handed_back"]
        assert {(t["entity"], t["from"], t["to"]) for t in handed} == {
            ("context", "Running", "Pending"),
            ("step", "Running", "Pending"),
        }
        _wait(lambda: client.get(f"/v1/pipelines/{uuid}").json()["state"] == "Complete")
        run = client.get(f"/v1/pipelines/{uuid}").json()
        assert run["status"] == "Success"
        assert (context()["attempt"], context()["orchestrator"]) == (2, "local")
    finally:
        stop_server(server)
