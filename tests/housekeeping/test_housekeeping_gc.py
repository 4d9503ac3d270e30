"""The retention policy on a real server: `otto gc --dry-run` lists exactly what the
policy lets go and `otto gc` frees it, while a run in progress keeps its workspace and
logs; `keep_runs`; the janitor in the background; disk use per project."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from housekeepingkit import FAILING, QUICK, create, gated, gc, objects_of, otto, run, write_project

from serverkit import UNSANDBOXED, Server, running_server, wait_for

RETENTION_SECONDS = 1.0
QUIET = {  # the janitor's first round runs at start, the next an hour later
    **UNSANDBOXED,
    "OTTO_JANITOR_INTERVAL": "3600",
    "HOUSEKEEPING_SECRET": "a-webhook-secret-for-tests",
}


@pytest.fixture
def db(request: pytest.FixtureRequest, backend: str) -> str | None:
    return None if backend == "sqlite" else str(request.getfixturevalue("postgres_dsn"))


@pytest.fixture
def server(tmp_path: Path, db: str | None) -> Iterator[Server]:
    env = {
        **QUIET,
        "OTTO_RETENTION_DAYS": str(RETENTION_SECONDS / 86400),
        "OTTO_WORKSPACE_GRACE": "0",
        "OTTO_KEEP_FAILED_WORKSPACES": "0",
    }
    with running_server(tmp_path / "home", db, **env) as srv:
        yield srv


def test_gc_lists_then_frees_what_the_policy_allows(server: Server, tmp_path: Path) -> None:
    workspaces = server.home / "workspaces"
    with server.client() as client:
        old = run(client, QUICK)["uuid"]
        failed = run(client, FAILING)["uuid"]
        gate = tmp_path / "gate"
        busy = create(client, gated(gate))
        wait_for(lambda: objects_of(client, busy), 30, "the running run's first log")
        time.sleep(RETENTION_SECONDS + 0.2)  # the complete ones are now past retention
        old_objects = objects_of(client, old)
        assert any(o["key"].startswith(f"{old}/artifacts/") for o in old_objects)
        assert (workspaces / old).is_dir() and (workspaces / busy).is_dir()

        listed = gc(server, dry_run=True)
        assert {r["pipeline"] for r in listed["runs"]} == {old, failed}
        by_run = {r["pipeline"]: r for r in listed["runs"]}
        assert by_run[old]["objects"] == len(old_objects)
        assert by_run[old]["bytes"] == sum(o["size"] for o in old_objects)
        assert by_run[old]["why"] == "retention_days"
        assert {w["pipeline"] for w in listed["workspaces"]} == {old, failed}
        assert listed["objects"] == sum(r["objects"] for r in listed["runs"])
        assert objects_of(client, old) == old_objects  # a dry run frees nothing
        assert (workspaces / old).is_dir()

        freed = gc(server, dry_run=False)
        assert {r["pipeline"] for r in freed["runs"]} == {old, failed}
        assert objects_of(client, old) == [] and objects_of(client, failed) == []
        assert not (workspaces / old).exists() and not (workspaces / failed).exists()
        expired = client.get(f"/v1/pipelines/{old}").json()
        assert expired["logs_expired"] is True and expired["status"] == "Success"
        page = client.get(f"/pipelines/{failed}").text  # opens at the failed step's log
        assert 'id="logs-expired"' in page and "logs expired" in page
        assert 'id="logs-expired"' not in client.get(f"/pipelines/{busy}").text

        # The run in progress kept everything, and still does.
        assert objects_of(client, busy) and (workspaces / busy).is_dir()
        assert client.get(f"/v1/pipelines/{busy}").json()["logs_expired"] is False
        assert gc(server, dry_run=True) == {
            "dry_run": True, "runs": [], "workspaces": [], "caches": [], "objects": 0,
            "bytes": 0,
        }  # fmt: skip
        gate.touch()
        wait_for(lambda: client.get(f"/v1/pipelines/{busy}").json()["state"] == "Complete")


def test_gc_prints_a_table_and_the_totals(server: Server) -> None:
    with server.client() as client:
        uuid = run(client, QUICK)["uuid"]
    time.sleep(RETENTION_SECONDS + 0.2)
    listed = otto(server, "gc", "--dry-run")
    assert listed.returncode == 0, listed.stderr
    assert uuid in listed.stdout and "retention_days" in listed.stdout
    assert "would free the logs and artifacts of 1 run (" in listed.stdout
    freed = otto(server, "gc")
    assert "freed the logs and artifacts of 1 run" in freed.stdout
    shown = otto(server, "logs", uuid)
    assert shown.returncode == 65 and "logs expired" in shown.stderr
    assert "Logs expired" in otto(server, "show", uuid).stdout


def test_keep_runs_keeps_the_newest_runs_objects(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_project(home, "app", "retention:\n  keep_runs: 2\n")
    with running_server(home, **QUIET) as server, server.client() as client:
        uuids = [run(client, QUICK, project="app")["uuid"] for _ in range(3)]
        other = run(client, QUICK)["uuid"]  # of no project: no limit
        listed = gc(server, dry_run=True)
        assert [(r["pipeline"], r["why"]) for r in listed["runs"]] == [(uuids[0], "keep_runs")]
        assert listed["workspaces"] == []  # the server's 5 minutes of grace

        use = client.get("/v1/projects/app").json()
        assert use["name"] == "app" and use["retention"]["keep_runs"] == 2
        stored = [o for u in uuids for o in objects_of(client, u)]
        assert use["disk"]["runs"] == 3 and use["disk"]["runs_with_logs"] == 3
        assert use["disk"]["objects"] == len(stored)
        assert use["disk"]["object_bytes"] == sum(o["size"] for o in stored)
        assert use["disk"]["workspaces"] == 3 and use["disk"]["workspace_bytes"] > 0

        gc(server, dry_run=False)
        assert objects_of(client, uuids[0]) == []
        assert all(objects_of(client, u) for u in (*uuids[1:], other))
        use = client.get("/v1/projects/app").json()["disk"]
        assert use["runs"] == 3 and use["runs_with_logs"] == 2
        assert client.get("/v1/projects/nope").status_code == 404


def test_a_project_overrides_the_server_defaults(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_project(home, "brief", "retention:\n  retention_days: 0.00001\n")
    with running_server(home, **QUIET) as server, server.client() as client:
        short = run(client, QUICK, project="brief")["uuid"]
        kept = run(client, QUICK)["uuid"]  # the server's 30 days
        time.sleep(1.0)
        assert [r["pipeline"] for r in gc(server, dry_run=True)["runs"]] == [short]
        assert kept


def test_a_bad_retention_block_is_named_at_its_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_project(home, "bad", "retention:\n  keep_run: 3\n")
    with running_server(home, **QUIET) as server, server.client() as client:
        assert client.get("/v1/projects/bad").status_code == 404
    log = (tmp_path / f"server-{server.url.rsplit(':', 1)[1]}.log").read_text()
    assert "keep_run" in log and "line 5" in log


def test_the_janitor_frees_in_the_background(tmp_path: Path) -> None:
    env = {
        **UNSANDBOXED,
        "OTTO_RETENTION_DAYS": str(RETENTION_SECONDS / 86400),
        "OTTO_WORKSPACE_GRACE": "0",
        "OTTO_JANITOR_INTERVAL": "0.2",
    }
    with running_server(tmp_path / "home", **env) as server, server.client() as client:
        uuid = run(client, QUICK)["uuid"]
        wait_for(lambda: not (server.home / "workspaces" / uuid).exists(), 10, "the workspace")
        wait_for(lambda: client.get(f"/v1/pipelines/{uuid}").json()["logs_expired"], 10)
        assert objects_of(client, uuid) == []


def test_gc_needs_the_token(tmp_path: Path) -> None:
    with running_server(tmp_path / "home", **QUIET, OTTO_TOKEN="s3cret-token") as server:
        refused = otto(server, "gc", "--dry-run")
        assert refused.returncode == 77
        body = {"dry_run": "maybe"}
        answer = httpx.post(
            f"{server.url}/v1/gc", json=body, headers={"Authorization": "Bearer s3cret-token"}
        )
        assert answer.status_code == 422 and answer.json()["error"]["field"] == "dry_run"
