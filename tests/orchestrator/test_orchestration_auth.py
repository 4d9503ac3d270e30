"""The API token: mutations and orchestrators need it; reads and /health do not; a server
without one stays on loopback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from orchkit import contexts_by_name, wait_run
from otto.client import NotPermitted, OttoClient
from otto.httpclient import Unauthorized
from otto.objectstore import HttpObjectStore
from otto.orchestrator.server_api import ServerApi
from serverkit import Server, free_port, orchestrator, running_server, start_orchestrator

TOKEN = "s3cret-t0ken"
PIPELINE = "pipeline { stage { name = 'Hello' steps { sh 'echo hello from afar' } } }"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("guarded") / "home"
    with running_server(home, OTTO_TOKEN=TOKEN, OTTO_LOCAL_ORCHESTRATOR="0") as server:
        yield server


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_mutations_need_the_token_reads_do_not(guarded: Server) -> None:
    body = {"ottofile": PIPELINE}
    with httpx.Client(base_url=guarded.url, timeout=10) as c:
        assert c.get("/health").status_code == 200
        assert c.get("/v1/pipelines").status_code == 200
        refused = c.post("/v1/pipelines", json=body)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        assert refused.headers["www-authenticate"].startswith("Bearer")
        wrong = c.post("/v1/pipelines", json=body, headers=bearer("guess"))
        assert wrong.status_code == 401 and "wrong" in wrong.json()["error"]["message"]
        assert c.put("/v1/objects/a/b.txt", content=b"x").status_code == 401
        assert c.get("/v1/orchestrators").status_code == 401  # orchestrator endpoints: all
        assert c.get("/v1/orchestrators/x/messages").status_code == 401
        created = c.post("/v1/pipelines", json=body, headers=bearer())
        assert created.status_code == 201
        assert c.get(f"/v1/pipelines/{created.json()['uuid']}").status_code == 200
        # A forge cannot send the token: webhooks are authenticated by their signature.
        hook = c.post("/v1/webhooks/github", content=b"{}", headers={"X-GitHub-Event": "ping"})
        assert hook.json()["error"]["code"] == "unsigned"  # the webhook's own check answered


def test_an_orchestrator_with_the_token_runs_pipelines(guarded: Server, tmp_path: Path) -> None:
    with (
        httpx.Client(base_url=guarded.url, headers=bearer(), timeout=10) as c,
        orchestrator(guarded.url, "trusted", tmp_path, token=TOKEN),
    ):
        uuid = c.post("/v1/pipelines", json={"ottofile": PIPELINE}).json()["uuid"]
        run = wait_run(c, uuid)
        assert run["status"] == "Success"
        hello = contexts_by_name(run)["Hello"]
        assert hello["orchestrator"] == "trusted"
        key = f"{uuid}/{hello['uuid']}/{hello['steps'][0]['uuid']}.log"
        assert "hello from afar" in c.get(f"/v1/objects/{key}").text  # uploaded with the token


def test_an_orchestrator_with_a_wrong_token_says_so_and_exits(
    guarded: Server, tmp_path: Path
) -> None:
    process = start_orchestrator(guarded.url, "intruder", tmp_path, token="guess")
    assert process.wait(20) == 77
    log = (tmp_path / "orchestrator-intruder.log").read_text()
    assert "refused the token" in log and "Traceback" not in log


def test_every_client_of_the_server_raises_one_unauthorized_for_a_wrong_token(
    guarded: Server,
) -> None:
    with OttoClient(guarded.url, token="guess") as cli, pytest.raises(NotPermitted) as refused:
        cli.abort("0" * 8)
    assert isinstance(refused.value, Unauthorized) and refused.value.exit_code == 77
    api = ServerApi(guarded.url, token="guess")
    with pytest.raises(Unauthorized, match="wrong API token"):
        api.call("POST", "/v1/orchestrators", {"name": "intruder"})
    api.close()
    store = HttpObjectStore(guarded.url, token="guess")
    with pytest.raises(Unauthorized, match="wrong API token"):
        store.put("intruder/k", b"v")
    store.close()


def test_without_a_token_the_server_stays_on_loopback(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "otto.cli", "server", "--host", "0.0.0.0"]
    args += ["--port", str(free_port()), "--home", str(tmp_path)]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=20)
    assert done.returncode == 64
    assert "refusing to listen on 0.0.0.0 without an API token" in done.stderr
    assert "OTTO_TOKEN" in done.stderr and "Traceback" not in done.stderr


def test_orchestrator_usage_errors_exit_64(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "otto.cli", "orchestrator", "--server", "ci:7670"]
    args += ["--labels", "gpu,bad label", "--capacity", "0"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=20, cwd=tmp_path)
    assert done.returncode == 64
    for field in ("--server", "--labels", "--capacity"):
        assert field in done.stderr
    assert "Traceback" not in done.stderr
