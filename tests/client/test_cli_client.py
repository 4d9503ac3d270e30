"""`otto ps|show|logs|abort|retry|events` as a user runs them, against a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from clientkit import follow_gated_run, otto, wait_complete, wait_step_running

from otto.client import OttoClient
from serverkit import Server, free_port

TWO_STAGES = """pipeline {
    stage { name = 'Build' steps { sh 'echo building; echo done' } }
    parallel {
        stage { name = 'Unit' steps { sh 'echo unit-ok' } }
        stage { name = 'Lint' steps { sh 'echo lint-bad; exit 1' } }
    }
}"""
# "3" waits for a gate the test opens only once `otto logs --follow` has shown "1".
COUNT = """pipeline {
    stage { name = 'Count' steps { sh 'echo 1; until [ -e GATE ]; do sleep 0.05; done; echo 3' } }
}"""
SLEEP = "pipeline { stage { name = 'Nap' steps { sh 'sleep 30' } } }"


@pytest.fixture(scope="module")
def failed_run(server: Server) -> str:
    with OttoClient(server.url) as c:
        uuid = c.create(ottofile=TWO_STAGES, repo="cli/show", ref="main").uuid
        wait_complete(c, uuid)
    return uuid


def test_ps_lists_runs_with_a_symbol_and_filters(server: Server, failed_run: str) -> None:
    done = otto("ps", "--repo", "cli/show", server=server)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split() == [
        "UUID", "STATUS", "PROJECT", "REF", "TRIGGER", "AGE", "DURATION", "REASON"
    ]  # fmt: skip
    assert row.startswith(failed_run[:8]) and "✗ Failed" in row and "cli/show" in row
    assert "main" in row
    as_json = json.loads(otto("ps", "--repo", "cli/show", "--json", server=server).stdout)
    assert set(as_json) == {"pipelines", "next_cursor"}
    assert as_json["pipelines"][0]["uuid"] == failed_run
    assert as_json["pipelines"][0]["status"] == "Failed"
    by_status = otto("ps", "--repo", "cli/show", "--state", "failed", "--json", server=server)
    assert [p["uuid"] for p in json.loads(by_status.stdout)["pipelines"]] == [failed_run]
    none = otto("ps", "--repo", "cli/show", "--state", "Success", server=server)
    assert none.stdout.strip() == "no pipelines"
    bad = otto("ps", "--state", "bogus", server=server)
    assert bad.returncode == 64 and "unknown state" in bad.stderr


def test_ps_shows_and_filters_by_project_and_trigger(server: Server) -> None:
    body = {
        "ottofile": "pipeline { steps { sh 'true' } }",
        "repo": "https://forge.example/web.git",
        "ref": "main",
        "project": "web",
        "trigger": "push by alice",
    }
    with OttoClient(server.url) as c:
        uuid = httpx.post(f"{server.url}/v1/pipelines", json=body).json()["uuid"]
        wait_complete(c, uuid)
    done = otto("ps", "--project", "web", server=server)
    assert done.returncode == 0, done.stderr
    _, row = done.stdout.splitlines()
    assert row.startswith(uuid[:8])
    assert "web " in row and "forge.example" not in row  # the project names it
    assert "push by alice" in row
    assert otto("ps", "--project", "nope", server=server).stdout.strip() == "no pipelines"


def test_show_gives_every_state_by_uuid_prefix(server: Server, failed_run: str) -> None:
    done = otto("show", failed_run[:8], server=server)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"Pipeline {failed_run}  ✗ Failed" in out
    assert "repo cli/show  ref main" in out
    lines = out.splitlines()
    build = next(line for line in lines if line.strip().startswith("Build"))
    assert "✓ Success" in build and "local" in build and " 1 " in build
    lint_step = next(line for line in lines if "lint-bad" in line)
    assert "✗ Failed (exit 1)" in lint_step
    assert any("Batch 2/2 · Parallel" in line and "✗ Failed" in line for line in lines)
    as_json = json.loads(otto("show", failed_run, "--json", server=server).stdout)
    assert as_json["uuid"] == failed_run and as_json["status"] == "Failed"
    contexts = [c for b in as_json["batches"] for c in b["contexts"]]
    assert {c["name"]: c["orchestrator"] for c in contexts} == {
        "Build": "local",
        "Unit": "local",
        "Lint": "local",
    }
    assert "model" in as_json


def test_show_of_an_unknown_run_is_one_line_and_65(server: Server) -> None:
    done = otto("show", "00000000", server=server)
    assert done.returncode == 65
    assert done.stderr == "otto: no pipeline 00000000\n"
    assert otto("show", "not-hex!", server=server).returncode == 65


def test_logs_print_every_step_in_order_with_headers(server: Server, failed_run: str) -> None:
    done = otto("logs", failed_run[:10], server=server)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    order = [out.index(text) for text in ("==> Build", "building", "==> Unit", "unit-ok")]
    assert order == sorted(order)
    assert "==> Lint › step 1/1 · sh 'echo lint-bad; exit 1' · ✗ Failed (exit 1)" in out
    only = otto("logs", failed_run, "--context", "Lint", server=server)
    assert "lint-bad" in only.stdout and "building" not in only.stdout
    missing = otto("logs", failed_run, "--context", "Nope", server=server)
    assert missing.returncode == 65 and "has no context 'Nope'" in missing.stderr


def test_logs_follow_streams_a_running_step(
    server: Server, client: OttoClient, tmp_path: Path
) -> None:
    uuid, lines = follow_gated_run(server, client, COUNT, tmp_path / "gate", opens_on="1")
    assert lines[0].startswith("==> Count › step 1/1"), lines
    # Lines came as they were written, not all at the end: "1" while the step still ran.
    assert [k for k in lines if k in ("1", "(gate opened)", "3")] == ["1", "(gate opened)", "3"]
    assert any(k.startswith("✓ Success") for k in lines)
    assert client.pipeline(uuid)["state"] == "Complete"


def test_abort_a_running_run(server: Server, client: OttoClient) -> None:
    uuid = client.create(ottofile=SLEEP).uuid
    wait_step_running(client, uuid)
    done = otto("abort", uuid[:8], server=server)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"aborting pipeline {uuid}"
    assert wait_complete(client, uuid)["status"] == "Aborted"
    again = otto("abort", uuid, server=server)
    assert again.returncode == 65 and "already Complete" in again.stderr


def test_retry_runs_the_failed_context_again(server: Server, client: OttoClient) -> None:
    uuid = client.create(ottofile=TWO_STAGES).uuid
    wait_complete(client, uuid)
    done = otto("retry", uuid[:8], server=server)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"retrying pipeline {uuid} (1 context: Lint)"
    document = wait_complete(client, uuid)
    lint = next(c for b in document["batches"] for c in b["contexts"] if c["name"] == "Lint")
    assert lint["attempt"] == 2 and document["status"] == "Failed"
    running = client.create(ottofile=SLEEP).uuid
    refused = otto("retry", running, server=server)
    assert refused.returncode == 65 and "still" in refused.stderr
    client.abort(running)


def test_events_plain_json_and_after(server: Server, failed_run: str, client: OttoClient) -> None:
    done = otto("events", "--pipeline", failed_run[:8], server=server)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "pipeline" in lines[0] and "∅ → Pending" in lines[0]
    assert "Running → Complete  Failed" in lines[-1]
    as_json = otto("events", "--pipeline", failed_run, "--json", server=server).stdout
    events = [json.loads(line) for line in as_json.splitlines()]
    assert len(events) == len(lines)
    assert set(events[0]) >= {"seq", "pipeline", "entity", "id", "from", "to", "status", "at"}
    middle = events[len(events) // 2]["seq"]
    later = otto("events", "--after", str(middle), "--json", server=server).stdout
    assert min(json.loads(line)["seq"] for line in later.splitlines()) == middle + 1


def test_events_follow_streams_new_transitions(server: Server, client: OttoClient) -> None:
    last = max((e["seq"] for e in client.all_events()), default=0)
    args = ["events", "--follow", "--json", "--after", str(last), "--server", server.url]
    follow = subprocess.Popen(
        [sys.executable, "-m", "otto.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert follow.stdout is not None
    uuid = client.create(ottofile="pipeline { steps { sh 'true' } }").uuid
    for line in follow.stdout:
        event = json.loads(line)
        if event["pipeline"] == uuid and (event["entity"], event["to"]) == ("pipeline", "Complete"):
            break
    follow.send_signal(signal.SIGINT)
    assert follow.wait(10) == 130
    assert "Traceback" not in (follow.stderr.read() if follow.stderr else "")


def test_a_server_that_is_down_exits_69_with_one_line() -> None:
    done = otto("ps", "--server", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 69
    assert done.stderr.count("\n") == 1 and "cannot reach the Otto server" in done.stderr
    env_done = subprocess.run(
        [sys.executable, "-m", "otto.cli", "show", "abc"],
        capture_output=True,
        text=True,
        env={**os.environ, "OTTO_SERVER": f"http://127.0.0.1:{free_port()}"},
    )
    assert env_done.returncode == 69


def test_usage_errors_exit_64() -> None:
    assert otto("logs").returncode == 64
    assert otto("ps", "--limit", "0").returncode == 64
