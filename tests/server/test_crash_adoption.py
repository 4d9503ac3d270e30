"""kill -9 of `otto server` while contexts are mid-step costs no work: the agents run
their steps to the end, hold their reports, and the restarted server re-adopts them."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from serverkit import UNSANDBOXED, Server, free_port, start_server, stop_server

KEPT = ("one", "two", "three")  # agents that outlive the server
# Short leases: a lost agent is seen in seconds, not the default 30.
ENV = {**UNSANDBOXED, "OTTO_LEASE_SECONDS": "2", "OTTO_CONCURRENCY": "6", "OTTO_CONTAINERS": "off"}


def waiting_stage(name: str, gate: Path, ledger: Path) -> str:
    """A stage whose step writes its agent's PID, waits for `gate`, then appends its
    name to `ledger`: a line per run of its step."""
    script = (
        f"echo $PPID > {gate.parent}/{name}.agent; echo $$ > {gate.parent}/{name}.step; "
        f"while [ ! -e {gate} ]; do sleep 0.05; done; echo {name} >> {ledger}"
    )
    return f"stage {{ name = '{name}' steps {{ sh '{script}' }} }}"


def parallel(gate: Path, ledger: Path, names: tuple[str, ...], *more: str) -> str:
    """A parallel batch of waiting stages named `names`, and `more` stages."""
    stages = "\n".join([*more, *(waiting_stage(n, gate, ledger) for n in names)])
    return f"pipeline {{ parallel {{ {stages} }} }}"


def wait_for(what: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not reached in {timeout} s")


def read_pid(path: Path) -> int:
    """The PID a step wrote to `path`, once it is there in full."""
    text = wait_for(lambda: path.exists() and path.read_text().endswith("\n") and path.read_text())
    return int(text)


def steps_running(client: httpx.Client, uuid: str, names: tuple[str, ...]) -> bool:
    run = client.get(f"/v1/pipelines/{uuid}").json()
    contexts = [c for b in run["batches"] for c in b["contexts"] if c["name"] in names]
    return all(s["state"] == "Running" for c in contexts for s in c["steps"])


def finished_agent(held: Path, pid: str) -> bool:
    """Whether the agent `pid` holds its last report (its held record names its PID)."""
    for directory in held.iterdir():
        record = (directory / "held.json").read_text()
        if f'"pid": {pid},' in record:
            return "context_finished" in (directory / "reports.jsonl").read_text()
    return False


def complete(client: httpx.Client, uuid: str) -> dict[str, Any] | None:
    run: dict[str, Any] = client.get(f"/v1/pipelines/{uuid}").json()
    return run if run["state"] == "Complete" else None


def crash(server: Server) -> None:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()


def transitions(client: httpx.Client, uuid: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.get(f"/v1/pipelines/{uuid}/transitions").json()[
        "transitions"
    ]
    return found


def test_agents_outlive_a_killed_server_and_are_re_adopted(tmp_path: Path) -> None:
    """Three agents finish their steps while no server runs and are re-adopted: Success,
    each step run once, no attempt lost. One agent is killed too: its lease runs out
    (`agent_lost`) and its context runs again by itself, as attempt 2. A failing script
    is never retried."""
    home, gate, ledger = tmp_path / "home", tmp_path / "go", tmp_path / "ledger"
    home.mkdir()
    port = free_port()
    server = start_server(home, port, **ENV)
    client = server.client()
    failing = "stage { name = 'bad' steps { sh 'exit 3' } }"
    ottofile = parallel(gate, ledger, (*KEPT, "lost"), failing)
    uuid = client.post("/v1/pipelines", json={"ottofile": ottofile}).json()["uuid"]
    wait_for(lambda: context_named(client, uuid, "bad")["state"] == "Failed")
    wait_for(lambda: steps_running(client, uuid, (*KEPT, "lost")))
    agent, step = read_pid(tmp_path / "lost.agent"), read_pid(tmp_path / "lost.step")
    crash(server)
    os.kill(agent, signal.SIGKILL)
    # Its step's process group too: nothing of the lost attempt is left to finish.
    os.killpg(step, signal.SIGKILL)

    gate.touch()  # the others' steps finish while no server runs
    wait_for(lambda: ledger.exists() and sorted(ledger.read_text().split()) == sorted(KEPT))
    held = home / "workspaces" / ".agents"
    for name in KEPT:  # each agent holds its last report
        agent = (tmp_path / f"{name}.agent").read_text().strip()
        wait_for(lambda a=agent: finished_agent(held, a))

    server = start_server(home, port, **ENV)
    try:
        client = server.client()
        run = wait_for(lambda: complete(client, uuid))
        assert run["status"] == "Failed"  # the failing script's, never retried
        assert sorted(ledger.read_text().split()) == sorted((*KEPT, "lost"))  # each once
        log = transitions(client, uuid)
        for name in KEPT:
            kept = context_named(client, uuid, name)
            assert (kept["state"], kept["attempt"]) == ("Success", 1)
            reasons = [t["reason"] for t in log if t["id"] == kept["uuid"]]
            assert reasons.count("claimed") == 1 and "agent_lost" not in reasons
        lost = context_named(client, uuid, "lost")
        assert (lost["state"], lost["attempt"]) == ("Success", 2)
        moves = [(t["from"], t["to"], t["reason"]) for t in log if t["id"] == lost["uuid"]]
        assert moves[-4:-1] == [
            ("Running", "Error", "agent_lost"),
            ("Error", "Pending", "auto_retry"),
            ("Pending", "Running", "claimed"),
        ]
        bad = context_named(client, uuid, "bad")
        assert (bad["state"], bad["attempt"]) == ("Failed", 1)
        assert "auto_retry" not in {t["reason"] for t in log if t["id"] == bad["uuid"]}
        wait_for(lambda: not list(held.iterdir()))  # every held report taken
    finally:
        stop_server(server)


def test_a_stale_agent_is_stopped_and_cannot_report(tmp_path: Path) -> None:
    """An agent whose attempt the PSM gave up on while its orchestrator was away (its
    lease expired: `agent_lost`, the context retried) holds a Success nobody takes."""
    home, gate, ledger = tmp_path / "home", tmp_path / "go", tmp_path / "ledger"
    home.mkdir()
    port = free_port()
    server = start_server(home, port, **ENV)
    client = server.client()
    uuid = client.post("/v1/pipelines", json={"ottofile": parallel(gate, ledger, ("one",))})
    uuid = uuid.json()["uuid"]
    wait_for(lambda: steps_running(client, uuid, ("one",)))
    crash(server)

    # Back without its orchestrator: the lease expires, the context waits for another.
    server = start_server(home, port, **ENV, OTTO_LOCAL_ORCHESTRATOR="0")
    client = server.client()
    wait_for(lambda: context_named(client, uuid, "one")["state"] == "Pending")
    gate.touch()  # the stale agent's step ends: it holds a Success
    wait_for(lambda: ledger.exists())
    held = next((home / "workspaces" / ".agents").iterdir())
    wait_for(lambda: "context_finished" in (held / "reports.jsonl").read_text())
    crash(server)

    server = start_server(home, port, **ENV)
    try:
        client = server.client()
        run = wait_for(lambda: complete(client, uuid))
        one = context_named(client, uuid, "one")
        assert (run["status"], one["attempt"]) == ("Success", 2)
        assert ledger.read_text().splitlines() == ["one", "one"]  # the new attempt ran too
        moves = [
            (t["from"], t["to"], t["reason"])
            for t in transitions(client, uuid)
            if t["entity"] == "context" and t["id"] == one["uuid"]
        ]
        assert [m for m in moves if m[1] == "Success"] == [moves[-1]]
        assert moves[-2] == ("Pending", "Running", "claimed")  # Success only after attempt 2
        assert not held.exists()
    finally:
        stop_server(server)


def context_named(client: httpx.Client, uuid: str, name: str) -> dict[str, Any]:
    run = client.get(f"/v1/pipelines/{uuid}").json()
    found: dict[str, Any] = next(
        c for b in run["batches"] for c in b["contexts"] if c["name"] == name
    )
    return found
