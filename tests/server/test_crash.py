"""kill -9 of the server while 50 pipelines are mid-run, then a restart: nothing
acknowledged is lost."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
from executorkit import award_open, drive_pipeline

from serverkit import free_port, start_server, stop_server

PIPELINE = """
pipeline {
    stage { name = 'one' steps { sh 'a' sh 'b' } }
    parallel {
        stage { name = 'two' steps { sh 'c' } }
        stage { name = 'three' steps { sh 'd' } }
    }
}
"""


def test_kill_9_mid_run_loses_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    server = start_server(home, port, OTTO_LOCAL_ORCHESTRATOR="0")
    client = httpx.Client(base_url=server.url, timeout=10)
    uuids = [
        client.post("/v1/pipelines", json={"ottofile": PIPELINE}).json()["uuid"] for _ in range(50)
    ]
    award_open(client, "orch")

    # Executors report as fast as they can; every acknowledged report is remembered.
    acknowledged: list[tuple[str, str, str]] = []  # (context, step or "", state)
    held: dict[str, int] = {}  # context → epoch of a lease we hold across the crash
    stop = threading.Event()

    def executor(mine: list[str]) -> None:
        with httpx.Client(base_url=server.url, timeout=5) as c:
            try:
                for uuid in mine:
                    ctx = c.get(f"/v1/pipelines/{uuid}").json()["batches"][0]["contexts"][0]
                    epoch = c.post(
                        f"/v1/contexts/{ctx['uuid']}/claim", json={"orchestrator": "orch"}
                    ).json()["epoch"]
                    held[ctx["uuid"]] = epoch
                    ref = {"orchestrator": "orch", "epoch": epoch}
                    for step in ctx["steps"]:
                        if stop.is_set():
                            return
                        base = f"/v1/contexts/{ctx['uuid']}/steps/{step['uuid']}"
                        c.post(f"{base}/started", json=ref).raise_for_status()
                        acknowledged.append((ctx["uuid"], step["uuid"], "Running"))
                        c.post(f"{base}/finished", json={**ref, "exit_code": 0}).raise_for_status()
                        acknowledged.append((ctx["uuid"], step["uuid"], "Success"))
            except httpx.HTTPError:
                return  # the server died under us

    threads = [threading.Thread(target=executor, args=(uuids[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 60 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(acknowledged) >= 60, "the executors made no progress"
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    stop.set()
    for t in threads:
        t.join()

    # A short lease: an agent whose claim was answered by a dying server never learnt its
    # lease, so its context is lost and must expire (agent_lost) before it is retried.
    server = start_server(home, port, OTTO_LOCAL_ORCHESTRATOR="0", OTTO_LEASE_SECONDS="3")
    try:
        client = httpx.Client(base_url=server.url, timeout=10)
        events = client.get("/v1/events", params={"after": 0, "limit": 10_000}).json()["events"]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))  # no gap, no dup
        for uuid in uuids:
            run = client.get(f"/v1/pipelines/{uuid}").json()
            last = [e for e in events if e["pipeline"] == uuid and e["entity"] == "pipeline"][-1]
            assert run["state"] == last["to"] == "Running"
        steps = {
            s["uuid"]: s["state"]
            for uuid in uuids
            for b in client.get(f"/v1/pipelines/{uuid}").json()["batches"]
            for c in b["contexts"]
            for s in c["steps"]
        }
        order = {"Pending": 0, "Running": 1, "Success": 2}
        for _, step, state in acknowledged:
            assert order[steps[step]] >= order[state], "an acknowledged report was lost"

        # Leases survived: the executor's old lease still works after the restart.
        for context, epoch in held.items():
            ref = {"orchestrator": "orch", "epoch": epoch}
            assert client.post(f"/v1/contexts/{context}/lease", json=ref).status_code == 200
            run_steps = [
                s
                for s, st in steps.items()
                if st == "Running" and any(a[0] == context and a[1] == s for a in acknowledged)
            ]
            for step in run_steps:
                client.post(
                    f"/v1/contexts/{context}/steps/{step}/finished", json={**ref, "exit_code": 0}
                ).raise_for_status()
            client.post(
                f"/v1/contexts/{context}/finished", json={**ref, "status": "Success"}
            ).raise_for_status()

        # And the runs carry on to the end; a context lost with its claim is retried.
        for uuid in uuids:
            final = drive_pipeline(client, uuid, "orch")
            if final["status"] == "Error":
                reasons = {
                    t["reason"]
                    for t in client.get(f"/v1/pipelines/{uuid}/transitions").json()["transitions"]
                }
                assert "agent_lost" in reasons, uuid
                client.post(f"/v1/pipelines/{uuid}/retry").raise_for_status()
                final = drive_pipeline(client, uuid, "orch")
            assert (final["state"], final["status"]) == ("Complete", "Success"), uuid
    finally:
        stop_server(server)


def test_an_award_nobody_claimed_before_a_crash_is_auctioned_again(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    server = start_server(home, port, OTTO_LOCAL_ORCHESTRATOR="0")
    client = httpx.Client(base_url=server.url, timeout=10)
    created = client.post("/v1/pipelines", json={"ottofile": "pipeline { steps { sh 'true' } }"})
    uuid = created.json()["uuid"]
    award_open(client, "ghost")  # an orchestrator that will never come back
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()

    server = start_server(home, port)  # with its local orchestrator
    try:
        client = httpx.Client(base_url=server.url, timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            run = client.get(f"/v1/pipelines/{uuid}").json()
            if run["state"] == "Complete":
                break
            time.sleep(0.1)
        assert (run["state"], run["status"]) == ("Complete", "Success")
        assert run["batches"][0]["contexts"][0]["orchestrator"] == "local"
    finally:
        stop_server(server)
