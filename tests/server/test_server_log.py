"""What `otto server` says on stderr (readable, or JSON with `--log-format json`, from
`--log-level` up), and how it refuses a port that is taken — real server processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from serverkit import Server, free_port, orchestrator, running_server, wait_for

URL = "https://github.com/acme/app.git"
OTTOFILE = "pipeline { stage { name = 'Build' steps { sh 'true' } } }"


def server_log(server: Server) -> str:
    port = server.url.rsplit(":", 1)[1]
    return (server.home.parent / f"server-{port}.log").read_text()


def projects_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "projects.d").mkdir(parents=True)
    (home / "projects.d" / "app.yml").write_text(
        f"source:\n  url: {URL}\n  refspec: [main]\nsecret_env: APP_SECRET\n"
    )
    (home / "projects.d" / "typo.yml").write_text(
        "source:\n  url: https://github.com/acme/typo.git\nsecert_env: TYPO_SECRET\n"
    )
    return home


def unsigned_push(client: httpx.Client, delivery: str) -> int:
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": delivery}
    return client.post("/v1/webhooks/github", content=b"{}", headers=headers).status_code


def lines_of(server: Server, message: str) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in server_log(server).splitlines() if line]
    return [e for e in entries if e["message"] == message]


def test_the_log_says_what_the_server_does(tmp_path: Path) -> None:
    env = {"APP_SECRET": "app-hook-secret", "OTTO_LOCAL_ORCHESTRATOR": "0"}
    with running_server(projects_home(tmp_path), **env) as server, server.client() as client:
        created = client.post("/v1/pipelines", json={"ottofile": OTTOFILE, "project": "demo"})
        uuid = created.json()["uuid"]
        assert unsigned_push(client, "d-unsigned") == 401
        with orchestrator(server.url, "far", tmp_path / "far"):
            pass
        log = wait_for(lambda: "orchestrator left name=far" in (s := server_log(server)) and s)
    typo = server.home / "projects.d" / "typo.yml"
    expected = [
        f"ERROR otto.webhooks: project file rejected file={typo}\n"
        "    line 1: missing key 'secret_env'\n"
        "    line 3: unknown key 'secert_env' (did you mean 'secret_env'?)\n",
        f"INFO  otto.webhooks: project loaded name=app url={URL}\n",
        f"INFO  otto.server: otto server started url={server.url}",
        f"INFO  otto.psm: run created uuid={uuid} source=api project=demo\n",
        "WARNING otto.webhooks: webhook refused forge=github event=push delivery=d-unsigned"
        ' status=401 why="X-Hub-Signature-256 header is missing"\n',
        "INFO  otto.auction: orchestrator joined name=far",
        "INFO  otto.auction: orchestrator left name=far\n",
    ]
    for text in expected:
        assert text in log, text
    positions = [log.index(text) for text in expected]
    assert positions == sorted(positions)  # in the order it happened


def test_json_log_lines_carry_the_fields_and_levels_are_chosen(tmp_path: Path) -> None:
    env = {
        "OTTO_LOCAL_ORCHESTRATOR": "0",
        "OTTO_LOG_FORMAT": "json",
        "OTTO_LOG_LEVEL": "warning",
    }
    with running_server(projects_home(tmp_path), **env) as server, server.client() as client:
        client.post("/v1/pipelines", json={"ottofile": OTTOFILE})
        assert unsigned_push(client, "d-unsigned") == 401
        refused = wait_for(lambda: lines_of(server, "webhook refused"))
    assert refused == [
        {
            "time": refused[0]["time"],
            "level": "warning",
            "logger": "otto.webhooks",
            "message": "webhook refused",
            "forge": "github",
            "event": "push",
            "delivery": "d-unsigned",
            "status": 401,
            "why": "X-Hub-Signature-256 header is missing",
        }
    ]
    assert refused[0]["time"].endswith("+00:00")
    (rejected,) = lines_of(server, "project file rejected")
    assert rejected["level"] == "error" and rejected["problems"] == [
        "line 1: missing key 'secret_env'",
        "line 3: unknown key 'secert_env' (did you mean 'secret_env'?)",
    ]
    assert lines_of(server, "run created") == []  # info, below the chosen level
    assert lines_of(server, "otto server started") == []


def test_a_busy_port_is_one_line_and_exit_69_before_anything_is_created(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "new-home"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        done = subprocess.run(
            [sys.executable, "-m", "otto.cli", "server", "--port", str(port), "--home", str(home)],
            env={**os.environ, "OTTO_LOCAL_ORCHESTRATOR": "0"},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 69
    assert done.stderr == (
        f"otto server: port {port} is in use — is another otto server running? use --port\n"
    )
    assert not home.exists()
    with httpx.Client(timeout=1) as client:  # nothing took the port meanwhile either
        try:
            client.get(f"http://127.0.0.1:{port}/health")
            answered = True
        except httpx.TransportError:
            answered = False
    assert not answered


def test_a_blocks_steps_are_logs_not_reports_the_psm_refuses(tmp_path: Path) -> None:
    """A `dir` block's steps have logs but no state in the PSM: their reports stay with
    the agent (once, each was refused, and the log said so for every nested step)."""
    nested = "pipeline { stage { name = 'Pack' steps { dir 'dist' { sh 'true' sh 'true' } } } }"
    with running_server(tmp_path / "home") as server, server.client() as client:
        uuid = client.post("/v1/pipelines", json={"ottofile": nested}).json()["uuid"]
        wait_for(lambda: client.get(f"/v1/pipelines/{uuid}").json()["state"] == "Complete")
        assert client.get(f"/v1/pipelines/{uuid}").json()["status"] == "Success"
        log = server_log(server)
    assert "run created" in log
    assert "report refused" not in log
