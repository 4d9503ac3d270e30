"""`otto replay` as a user runs it, against a real server: `consistent` (exit 0), or each
difference between the stored states and the ones its log replays to (exit 1); `--all`
pages through every run."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import httpx
import pytest
from clientkit import otto, wait_complete

from otto.client import OttoClient
from serverkit import Server, running_server

RAN = """pipeline {
    stage { name = 'Build' steps { sh 'true' } }
    parallel {
        stage { name = 'Unit' steps { sh 'true' } }
        stage { name = 'Lint' steps { sh 'exit 1' } }
    }
}"""
# Held at its input: a run that stays Running, with nothing to execute.
HELD = "pipeline { stage { name = 'Ship' gates { enter { input 'Ship?' } } steps { sh 'true' } } }"
HELD_RUNS = 11


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("replay") / "home") as srv:
        yield srv


def test_replay_is_consistent_until_a_stored_state_is_changed(server: Server) -> None:
    with OttoClient(server.url) as client:
        ran = client.create(ottofile=RAN).uuid
        for _ in range(HELD_RUNS):
            client.create(ottofile=HELD)
        document = wait_complete(client, ran)
    assert document["status"] == "Failed"
    unit = next(c for b in document["batches"] for c in b["contexts"] if c["name"] == "Unit")

    done = otto("replay", ran[:8], server=server)
    assert (done.returncode, done.stdout) == (0, "consistent\n"), done.stderr
    every = otto("replay", "--all", "--page-size", "2", server=server)
    assert every.returncode == 0, every.stdout + every.stderr
    assert every.stdout == f"{HELD_RUNS + 1} runs checked, 0 inconsistent\n"

    with sqlite3.connect(server.home / "otto.db", timeout=10) as db:
        db.execute("UPDATE contexts SET state = 'Failed' WHERE uuid = ?", (unit["uuid"],))

    done = otto("replay", ran, server=server)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        f"pipeline {ran}: 1 difference",
        f"  context {unit['uuid']} state: stored Failed, replayed Success",
    ]
    as_json = json.loads(otto("replay", ran, "--json", server=server).stdout)
    assert as_json["consistent"] is False
    assert as_json["differences"] == [
        {"entity": "context", "id": unit["uuid"], "field": "state", "stored": "Failed",
         "replayed": "Success"}
    ]  # fmt: skip

    every = otto("replay", "--all", "--page-size", "2", server=server)
    assert every.returncode == 1
    lines = every.stdout.splitlines()
    assert lines[0] == f"pipeline {ran}: 1 difference"
    assert lines[-1] == f"{HELD_RUNS + 1} runs checked, 1 inconsistent"
    summary = otto("replay", "--all", "--json", server=server).stdout.splitlines()
    assert [json.loads(line)["pipeline"] for line in summary[:-1]] == [ran]
    assert json.loads(summary[-1]) == {"checked": HELD_RUNS + 1, "inconsistent": 1}


def test_replay_refuses_an_unknown_run_and_a_bad_call(server: Server) -> None:
    unknown = "00000000-0000-0000-0000-000000000000"
    answer = httpx.get(f"{server.url}/v1/pipelines/{unknown}/replay", timeout=10)
    assert answer.status_code == 404
    done = otto("replay", unknown, server=server)
    assert done.returncode == 65 and "no pipeline" in done.stderr
    assert "Traceback" not in done.stderr
    for args in ((), ("--all", unknown)):
        bad = otto("replay", *args, server=server)
        assert bad.returncode == 64 and "give a pipeline uuid or --all" in bad.stderr
