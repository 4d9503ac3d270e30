"""A real `otto server` whose `$OTTO_HOME` is a 2 MB tmpfs: a full disk is an
error with its name. Creating a run answers a JSON 507 `disk_full`, not a plain-text 500;
the server says so once, and `/health` reports `degraded` until space is freed; a step
whose log fills the disk ends its context `Error` `disk_full`, not `agent_lost`; once space
is back, runs go through again."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest

from diskkit import fill, small_tmpfs
from serverkit import UNSANDBOXED, Server, running_server, wait_for

SMALL = "pipeline { stage { name = 'small' steps { sh 'echo fine' } } }"
BIG_LOG = "pipeline { stage { name = 'big' steps { sh 'yes x | head -c 5000000' } } }"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with (
        small_tmpfs(tmp_path / "home") as home,
        running_server(home, OTTO_LEASE_SECONDS="5", **UNSANDBOXED) as srv,
    ):
        yield srv


def log_of(server: Server) -> str:
    port = server.url.rsplit(":", 1)[1]
    return (server.home.parent / f"server-{port}.log").read_text(errors="replace")


def finished(client: httpx.Client, uuid: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run = client.get(f"/v1/pipelines/{uuid}").json()
        return run if run["state"] == "Complete" else None

    return wait_for(done, 60, f"run {uuid} to complete")


def create(client: httpx.Client, ottofile: str) -> httpx.Response:
    return client.post("/v1/pipelines", json={"ottofile": ottofile})


def degraded_after_a_refusal(client: httpx.Client, answers: list[httpx.Response]) -> Any:
    """`/health` right after one more run was refused, if it says `degraded`. (Not after
    any write: a full disk may still take a small one, which ends the episode.)"""
    answers.append(create(client, SMALL))
    health = client.get("/health")
    assert health.status_code == 200
    if answers[-1].status_code != 201 and health.json()["status"] == "degraded":
        return health.json()
    return None


def test_a_full_database_disk_is_a_507_and_health_says_so(server: Server) -> None:
    with server.client() as c:
        first = create(c, SMALL)
        assert first.status_code == 201
        assert finished(c, first.json()["uuid"])["status"] == "Success"
        filler = fill(server.home)
        answers = [create(c, SMALL) for _ in range(5)]
        health = wait_for(lambda: degraded_after_a_refusal(c, answers), 10, "health: degraded")
        refused = [a for a in answers if a.status_code != 201]
        assert refused, "nothing was refused on a full disk"
        for answer in refused:
            assert answer.status_code == 507, answer.text
            assert answer.headers["content-type"] == "application/json"
            error = answer.json()["error"]
            assert error["code"] == "disk_full"
            assert "disk is full" in error["message"]
        assert health["reason"].startswith("disk_full: ")
        log = log_of(server)
        # Once per episode, not per request. A full disk may still take a small write
        # (SQLite reuses free pages): that ends an episode, said, and the next refusal
        # starts another. So between two refusals said, a write succeeded.
        said = [
            "refused" if "ERROR otto.disk: disk_full: " in line else "recovered"
            for line in log.splitlines()
            if "ERROR otto.disk: disk_full: " in line
            or "storage recovered (a write succeeded)" in line
        ]
        assert 1 <= said.count("refused") <= len(refused), log
        assert ("refused", "refused") not in pairwise(said), log
        assert "Traceback" not in log and "Exception in ASGI" not in log, log

        filler.unlink()
        wait_for(lambda: c.get("/health").json() == {"status": "ok"}, 10, "health to be ok")
        again = create(c, SMALL)
        assert again.status_code == 201, again.text
        assert finished(c, again.json()["uuid"])["status"] == "Success"
        assert "storage recovered" in log_of(server)


def test_a_log_that_fills_the_disk_ends_its_context_disk_full(server: Server) -> None:
    with server.client() as c:
        created = create(c, BIG_LOG)
        assert created.status_code == 201
        run = finished(c, created.json()["uuid"])
        assert run["status"] == "Error"
        context = run["batches"][0]["contexts"][0]
        assert context["status"] == "Error"
        step = context["steps"][0]
        assert step["status"] == "Error"
        transitions = c.get(f"/v1/pipelines/{run['uuid']}/transitions").json()["transitions"]
        reasons = [t.get("reason") or "" for t in transitions if t["id"] == context["uuid"]]
        assert any(r.startswith("disk_full: ") for r in reasons), transitions
        assert not any("agent_lost" in r for r in reasons), reasons
        # Nothing of the refused append stayed behind: the disk has room for the next run.
        again = create(c, SMALL)
        assert again.status_code == 201, again.text
        assert finished(c, again.json()["uuid"])["status"] == "Success"
