"""Two real `otto server` replicas on one PostgreSQL schema, under faults: a replica killed
(its orchestrator fails over), its database sessions terminated, its writer stalled inside
a transaction. Whatever happens, no context attempt runs twice and no run is left stuck."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from orchkit import create, wait_run
from otto.psm.store.postgres import STALLED_WRITER
from serverkit import (
    UNSANDBOXED,
    Server,
    connected,
    free_port,
    orchestrator,
    start_server,
    stop_server,
    wait_for,
)

FAST = {
    **UNSANDBOXED,
    "OTTO_LEASE_SECONDS": "3",
    "OTTO_ORCHESTRATOR_GRACE": "2",
    "OTTO_CONCURRENCY": "10",
}
REMOTE_ONLY = {**FAST, "OTTO_LOCAL_ORCHESTRATOR": "0"}


def gated(ledger: Path, gate: Path, contexts: int = 1) -> str:
    """A run whose steps write their context to `ledger`, then wait for `gate`."""
    step = f"echo $OTTO_CONTEXT >> {ledger}; until [ -e {gate} ]; do sleep 0.1; done; echo done"
    stage = "stage { name = 'S%d' steps { sh '" + step + "' } }"
    return "pipeline { parallel { " + " ".join(stage % i for i in range(contexts)) + " } }"


@pytest.fixture
def start_replicas(tmp_path: Path, postgres_dsn: str) -> Iterator[Callable[..., list[Server]]]:
    """`start_replicas(**env)`: two replicas on this test's schema and one object store (as
    S3 would be: a directory both see); stopped at the end."""
    servers: list[Server] = []
    objects = str(tmp_path / "objects")

    def start(**env: str) -> list[Server]:
        for name in ("one", "two"):
            home = tmp_path / name
            home.mkdir()
            server = start_server(home, free_port(), postgres_dsn, OTTO_OBJECTS=objects, **env)
            servers.append(server)
        return servers

    yield start
    for server in servers:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGCONT)  # a stalled one stops too
        stop_server(server)


def started_once(client: httpx.Client, uuids: list[str], ledger: Path) -> None:
    """Every attempt of each context of `uuids` started once, by the log and by its steps
    (a context lost with its replica may be retried: a new attempt)."""
    attempts: Counter[tuple[str, int]] = Counter()
    for uuid in uuids:
        wait_run(client, uuid, timeout=40)
        attempts.update(
            (t["id"], t["data"]["attempt"])
            for t in client.get(f"/v1/pipelines/{uuid}/transitions").json()["transitions"]
            if t["entity"] == "context" and t["to"] == "Running"
        )
    assert set(attempts.values()) == {1}, attempts
    started = Counter(context for context, _ in attempts)
    ran = Counter(ledger.read_text().split())
    assert all(ran[context] <= started[context] for context in ran), (ran, started)


def sessions(server: Server) -> str:
    """The `application_name` of a replica's database sessions."""
    return f"otto {server.process.pid}"


def terminate_sessions(dsn: str, server: Server) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (sessions(server),),
        ).fetchall()
    return len(rows)


def test_an_orchestrator_fails_over_to_the_other_replica(
    start_replicas: Callable[..., list[Server]], tmp_path: Path
) -> None:
    # A lease that outlasts the failover: this proves the failover, not the lease's expiry.
    one, two = start_replicas(**{**REMOTE_ONLY, "OTTO_LEASE_SECONDS": "30"})
    ledger, gate = tmp_path / "ledger", tmp_path / "gate"
    with (
        orchestrator(f"{one.url},{two.url}", "worker", tmp_path, extra=["--runtime", "none"]),
        one.client() as c1,
        two.client() as c2,
    ):
        uuid = create(c1, gated(ledger, gate))
        wait_run(c2, uuid, lambda run: ledger.exists() and run["state"] == "Running")
        stop_server(one, signal.SIGKILL)
        # The orchestrator registers with the other replica; its lease renewals go there.
        wait_for(lambda: connected(c2, "worker"), 20, "the orchestrator on the second replica")
        gate.touch()
        run = wait_run(c2, uuid)
        assert (run["status"], run["batches"][0]["contexts"][0]["attempt"]) == ("Success", 1)
        # Its agent stored the step's log through the second replica too.
        ctx = run["batches"][0]["contexts"][0]
        log = c2.get(f"/v1/objects/{uuid}/{ctx['uuid']}/{ctx['steps'][0]['uuid']}.log")
        assert "done" in log.text
        after = create(c2, gated(ledger, gate))
        assert wait_run(c2, after)["status"] == "Success"
        started_once(c2, [uuid, after], ledger)


def test_a_replica_whose_sessions_are_terminated_carries_on(
    start_replicas: Callable[..., list[Server]], tmp_path: Path, postgres_dsn: str
) -> None:
    one, two = start_replicas(**FAST)
    ledger, gate = tmp_path / "ledger", tmp_path / "gate"
    with one.client() as c1, two.client() as c2:
        uuids = [create((c1, c2)[i % 2], gated(ledger, gate, 2)) for i in range(4)]
        wait_for(lambda: len(ledger.read_text().split()) == 8 if ledger.exists() else False)
        assert terminate_sessions(postgres_dsn, one) >= 2  # its writer, readers, listener
        gate.touch()
        for uuid in uuids:
            assert wait_run(c1, uuid, timeout=40)["status"] == "Success"
        # It still takes new runs, and hears of the other replica's transitions.
        fresh = wait_for(lambda: c1.post("/v1/pipelines", json={"ottofile": gated(ledger, gate)}))
        assert fresh.status_code == 201, fresh.text
        later = create(c2, gated(ledger, gate))
        for uuid in (fresh.json()["uuid"], later):
            assert wait_run(c1, uuid)["status"] == "Success"
        started_once(c1, [*uuids, fresh.json()["uuid"], later], ledger)


def test_a_replica_stalled_inside_a_transaction_does_not_stop_the_other(
    start_replicas: Callable[..., list[Server]], tmp_path: Path, postgres_dsn: str
) -> None:
    one, two = start_replicas(**{**REMOTE_ONLY, "OTTO_LEASE_SECONDS": "30"})
    ledger, gate = tmp_path / "ledger", tmp_path / "gate"
    with (
        orchestrator(f"{two.url},{one.url}", "worker", tmp_path, extra=["--runtime", "none"]),
        one.client() as c1,
        two.client() as c2,
        psycopg.connect(postgres_dsn) as blocker,
    ):
        try:
            stalled = create(c1, gated(ledger, gate))
            wait_run(c2, stalled, lambda run: run["state"] == "Running")
            # Replica one's writer takes the sequence row, then waits behind our lock...
            blocker.execute("SELECT uuid FROM pipelines WHERE uuid = %s FOR UPDATE", (stalled,))
            answers: list[int] = []
            abort = threading.Thread(
                target=lambda: answers.append(
                    httpx.post(f"{one.url}/v1/pipelines/{stalled}/abort", timeout=60).status_code
                )
            )
            abort.start()
            wait_for(lambda: _abort_waits_on_a_lock(postgres_dsn, one), 30, "the abort to stall")
            one.process.send_signal(signal.SIGSTOP)  # ...and stalls there, the row held
            blocker.commit()
            # The database ends its stalled transaction: the other replica goes on meanwhile.
            with httpx.Client(base_url=two.url, timeout=STALLED_WRITER + 15) as patient:
                other = create(patient, gated(ledger, gate))  # waits for the stalled one's end
            wait_run(c2, other, lambda run: run["state"] == "Running", timeout=STALLED_WRITER + 15)
            one.process.send_signal(signal.SIGCONT)
            abort.join(30)
            assert answers == [503]  # its write was never committed: said so, not done
            gate.touch()
            for uuid in (stalled, other):  # replica one serves again, with what two did
                assert wait_run(c1, uuid, timeout=40)["status"] == "Success"
            started_once(c1, [stalled, other], ledger)
        finally:
            one.process.send_signal(signal.SIGCONT)
            gate.touch()  # never leave its steps waiting (their agents outlive the servers)


def _abort_waits_on_a_lock(dsn: str, server: Server) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
            " AND wait_event_type = 'Lock' AND query LIKE 'UPDATE pipelines SET abort_requested%%'",
            (sessions(server),),
        ).fetchone()
    return bool(row and row[0])
