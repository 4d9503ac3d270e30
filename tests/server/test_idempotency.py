"""`POST /v1/pipelines` with an `Idempotency-Key`: a retry gets the
first answer, status and body, also from a server restarted after a kill -9."""

from __future__ import annotations

import signal
from pathlib import Path

from serverkit import free_port, start_server, stop_server

ONE_STEP = "pipeline { stage { name = 'one' steps { sh 'true' } } }"


def test_a_retry_gets_the_first_answer_even_after_a_crash(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    server = start_server(home, port, OTTO_LOCAL_ORCHESTRATOR="0")
    body = {"ottofile": ONE_STEP, "ref": "refs/heads/main"}
    key = {"Idempotency-Key": "7c1e-retry-me"}
    try:
        with server.client() as c:
            first = c.post("/v1/pipelines", json=body, headers=key)
            assert first.status_code == 201
            again = c.post("/v1/pipelines", json=body, headers=key)
            assert (again.status_code, again.json()) == (201, first.json())
            assert again.headers["idempotent-replayed"] == "true"
            other = c.post("/v1/pipelines", json={**body, "ref": "refs/heads/x"}, headers=key)
            assert other.status_code == 422
            assert other.json()["error"]["code"] == "idempotency_key_reused"
            fresh = c.post("/v1/pipelines", json=body, headers={"Idempotency-Key": "another"})
            assert fresh.status_code == 201 and fresh.json() != first.json()
            bad = c.post("/v1/pipelines", json=body, headers={"Idempotency-Key": "x" * 256})
            assert bad.status_code == 400
            assert bad.json()["error"]["field"] == "Idempotency-Key"
            operation = c.get("/openapi.json").json()["paths"]["/v1/pipelines"]["post"]
            assert {"name": "Idempotency-Key", "in": "header"}.items() <= next(
                p for p in operation["parameters"] if p["name"] == "Idempotency-Key"
            ).items()
    finally:
        stop_server(server, signal.SIGKILL)

    server = start_server(home, port, OTTO_LOCAL_ORCHESTRATOR="0")
    try:
        with server.client() as c:
            after = c.post("/v1/pipelines", json=body, headers=key)
            assert (after.status_code, after.json()) == (201, first.json())
            uuids = [p["uuid"] for p in c.get("/v1/pipelines").json()["pipelines"]]
            assert sorted(uuids) == sorted([first.json()["uuid"], fresh.json()["uuid"]])
    finally:
        stop_server(server)
