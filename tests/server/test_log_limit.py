"""`max_log_bytes` through a real server: the setting reaches the agents; a
step whose log would pass it keeps the first part and a line saying it was cut, its
process is stopped, and the step and its run end Failed with reason `log_limit`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from otto.config import ConfigError, load_settings
from serverkit import UNSANDBOXED, orchestrator, running_server, wait_for

LIMIT = 10_000
ENDLESS = "pipeline { stage { name = 'chatty' steps { sh 'yes x' \n sh 'echo never' } } }"


def test_a_step_over_max_log_bytes_is_cut_and_fails(tmp_path: Path) -> None:
    env = {"OTTO_MAX_LOG_BYTES": str(LIMIT), **UNSANDBOXED}
    with running_server(tmp_path / "home", **env) as server, server.client() as c:
        created = c.post("/v1/pipelines", json={"ottofile": ENDLESS})
        assert created.status_code == 201
        uuid = created.json()["uuid"]

        run = wait_for(lambda: _complete(c, uuid), 60, "the endless step to be stopped")
        assert run["status"] == "Failed"
        context = run["batches"][0]["contexts"][0]
        first, second = context["steps"]
        assert first["status"] == "Failed"
        assert second["status"] != "Success"  # never ran
        transitions = c.get(f"/v1/pipelines/{uuid}/transitions").json()["transitions"]
        ended = {t["id"]: t for t in transitions if t["status"] is not None}
        reasons = {key: t["reason"] for key, t in ended.items()}
        assert reasons[first["uuid"]] == "log_limit", transitions
        assert reasons[context["uuid"]] == "log_limit", transitions
        assert ended[first["uuid"]]["data"]["exit_code"] < 0  # stopped by a signal
        log = c.get(f"/v1/objects/{uuid}/{context['uuid']}/{first['uuid']}.log").content
        head, cut, tail = log.partition(b"\n[otto] log cut:")
        assert cut and len(head) == LIMIT
        assert tail.endswith(b"\n") and tail.count(b"\n") == 1


def test_max_log_bytes_is_a_setting() -> None:
    assert load_settings(env={}).max_log_bytes == 1 << 30
    assert load_settings(env={"OTTO_MAX_LOG_BYTES": "10000"}).max_log_bytes == LIMIT
    with pytest.raises(ConfigError, match="OTTO_MAX_LOG_BYTES"):
        load_settings(env={"OTTO_MAX_LOG_BYTES": "0"})


def test_a_remote_orchestrator_reads_max_log_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTTO_MAX_LOG_BYTES", str(LIMIT))  # the orchestrator's environment
    home = tmp_path / "home"
    with (
        running_server(home, OTTO_LOCAL_ORCHESTRATOR="0", OTTO_MAX_LOG_BYTES="1000000") as server,
        orchestrator(server.url, "far", tmp_path / "far", extra=["--runtime", "none"]),
        server.client() as c,
    ):
        created = c.post("/v1/pipelines", json={"ottofile": ENDLESS})
        uuid = created.json()["uuid"]
        run = wait_for(lambda: _complete(c, uuid), 60, "the endless step to be stopped")
        assert run["status"] == "Failed"
        context = run["batches"][0]["contexts"][0]
        step = context["steps"][0]
        log = c.get(f"/v1/objects/{uuid}/{context['uuid']}/{step['uuid']}.log").content
        assert len(log.partition(b"\n[otto] log cut:")[0]) == LIMIT  # its own setting


def _complete(c: httpx.Client, uuid: str) -> dict | None:
    run = c.get(f"/v1/pipelines/{uuid}").json()
    return run if run["state"] == "Complete" else None
