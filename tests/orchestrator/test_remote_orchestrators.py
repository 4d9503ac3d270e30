"""`otto server` with its local orchestrator off and two `otto orchestrator` processes with
different labels, all real processes talking HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from orchkit import contexts_by_name, create, gone, wait_run
from otto.model import Batch, BatchMode, Context, Pipeline, Step
from serverkit import (
    Server,
    connected,
    free_port,
    orchestrator,
    running_server,
    start_server,
    stop_server,
    wait_for,
)

PID_FOLLOWING = ["--runtime", "none"]  # these tests follow steps by their PIDs
REMOTE_ONLY = {
    "OTTO_LOCAL_ORCHESTRATOR": "0",
    "OTTO_LEASE_SECONDS": "2",
    "OTTO_ORCHESTRATOR_GRACE": "1",
}
ROUTED = """
pipeline {
    parallel {
        stage { name = 'Train' labels = 'gpu' steps { sh 'echo "training on $(hostname)"' } }
        stage { name = 'Lint'  labels = 'cpu' steps { sh 'echo linting' } }
        stage { name = 'Big'   labels = 'gpu, large' steps { sh 'echo big' } }
    }
    stage { name = 'Ship' steps { sh 'echo shipping' } }
}
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server, orchestrators `gpu-box` (gpu, large) and `cpu-box` (cpu)."""
    root = tmp_path_factory.mktemp("cluster")
    # No lease is to run out here, though a busy machine may stall a renewal for seconds.
    # Auctions close once every invited orchestrator bid: a late bid is no bid, retried later.
    env = {**REMOTE_ONLY, "OTTO_LEASE_SECONDS": "30", "OTTO_AUCTION_WINDOW": "5"}
    with (
        running_server(root / "home", **env) as server,
        orchestrator(server.url, "gpu-box", root, "gpu,large"),
        orchestrator(server.url, "cpu-box", root, "cpu"),
    ):
        yield server


def test_contexts_go_where_their_labels_fit(cluster: Server) -> None:
    with cluster.client() as c:
        uuid = create(c, ROUTED)
        run = wait_run(c, uuid)
        assert (run["state"], run["status"]) == ("Complete", "Success")
        where = {name: ctx["orchestrator"] for name, ctx in contexts_by_name(run).items()}
        assert where["Train"] == "gpu-box" and where["Big"] == "gpu-box"
        assert where["Lint"] == "cpu-box"
        assert where["Ship"] in ("gpu-box", "cpu-box")  # either may: no requirement

        # The agents streamed their logs to the server's object store over HTTP.
        lint = contexts_by_name(run)["Lint"]
        key = f"{uuid}/{lint['uuid']}/{lint['steps'][0]['uuid']}.log"
        assert "linting" in c.get(f"/v1/objects/{key}").text

        auctions = c.get("/v1/auctions").json()["auctions"]
        mine = [a for a in auctions if any(lot["pipeline"] == uuid for lot in a["lots"])]
        assert mine and all(a["state"] == "closed" for a in mine)
        first = mine[-1]
        assert set(first["invited"]) == {"gpu-box", "cpu-box"}
        bidders = {(b["context"], b["orchestrator"]) for b in first["bids"]}
        assert (lint["uuid"], "cpu-box") in bidders
        assert (lint["uuid"], "gpu-box") not in bidders  # it cannot run Lint: no bid


def test_orchestrators_are_listed(cluster: Server) -> None:
    with cluster.client() as c:
        found = {o["name"]: o for o in c.get("/v1/orchestrators").json()["orchestrators"]}
    assert set(found) == {"gpu-box", "cpu-box"}  # the local one is off
    assert found["gpu-box"]["capabilities"]["labels"] == ["gpu", "large"]
    assert found["cpu-box"]["connected"] and found["cpu-box"]["capacity"] == 2


def test_a_context_nobody_can_run_waits_for_an_orchestrator_that_can(
    cluster: Server, tmp_path: Path
) -> None:
    with cluster.client() as c:
        uuid = create(c, "pipeline { stage { name = 'Tpu' labels = 'tpu' steps { sh 'true' } } }")
        run = wait_run(c, uuid, lambda r: r["batches"][0]["state"] == "AuctionStarted", 5)
        assert contexts_by_name(run)["Tpu"]["orchestrator"] is None
        with orchestrator(cluster.url, "tpu-box", tmp_path, "tpu"):
            run = wait_run(c, uuid)
        assert run["status"] == "Success"
        assert contexts_by_name(run)["Tpu"]["orchestrator"] == "tpu-box"
        wait_for(lambda: not connected(c, "tpu-box"), 5, "tpu-box to leave")


def test_bad_requests_name_the_field(cluster: Server) -> None:
    good = {
        "name": "x1",
        "capabilities": {"os": "linux", "arch": "x86_64", "cores": 2, "memory_mb": 1024},
        "capacity": 1,
    }
    with cluster.client() as c:
        for change, field in (
            ({"name": "no spaces"}, "name"),
            ({"capacity": 0}, "capacity"),
            ({"cost_factor": -1}, "cost_factor"),
            (
                {"capabilities": {**good["capabilities"], "labels": ["a,b"]}},
                "capabilities.labels.0",
            ),
            ({"surprise": 1}, "surprise"),
        ):
            answer = c.post("/v1/orchestrators", json={**good, **change})
            assert answer.status_code == 422, (change, answer.text)
            assert answer.json()["error"]["field"] == field
        taken = c.post("/v1/orchestrators", json={**good, "name": "gpu-box"})
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "name_taken"

        bid = {"orchestrator": "gpu-box", "costs": {}}
        assert c.post("/v1/auctions/abc/bids", json=bid).json()["error"]["field"] == "id"
        late = c.post("/v1/auctions/999999/bids", json=bid)
        assert late.status_code == 409 and late.json()["error"]["code"] == "auction_closed"
        negative = c.post("/v1/auctions/1/bids", json={**bid, "costs": {"c": -2}})
        assert negative.status_code == 422 and negative.json()["error"]["field"] == "costs.c"
        assert c.get("/v1/orchestrators/nobody/messages").status_code == 404
        assert c.post("/v1/orchestrators/nobody/poke").status_code == 404
        assert c.delete("/v1/orchestrators/nobody").status_code == 404

        paths = c.get("/openapi.json").json()["paths"]
        for path in (
            "/v1/auctions",
            "/v1/auctions/{id}/bids",
            "/v1/orchestrators",
            "/v1/orchestrators/{name}/messages",
            "/v1/contexts/{uuid}/hand-back",
        ):
            assert path in paths, path


def test_an_award_not_taken_up_goes_elsewhere_after_the_grace(
    cluster: Server, tmp_path: Path
) -> None:
    """A hand-driven orchestrator wins a context, then vanishes without claiming it."""
    body = {
        "name": "ghost",
        "capabilities": {"os": "linux", "arch": "x86_64", "labels": ["vpu"]},
        "capacity": 1,
    }
    with httpx.Client(base_url=cluster.url, timeout=10) as c:
        assert c.post("/v1/orchestrators", json=body).status_code == 201
        with c.stream("GET", "/v1/orchestrators/ghost/messages") as stream:
            lines = stream.iter_lines()
            uuid = create(c, "pipeline { stage { name = 'V' labels = 'vpu' steps { sh 'true' } } }")
            awarded = False
            for event, data in _events(lines):
                if event == "auction" and data["lots"]:
                    costs = {lot["context"]: 1.0 for lot in data["lots"]}
                    c.post(
                        f"/v1/auctions/{data['id']}/bids",
                        json={"orchestrator": "ghost", "costs": costs},
                    )
                if event == "award":
                    assert data["lot"]["pipeline"] == uuid and data["model"]["steps"]
                    awarded = True
                    break
            assert awarded
        # The stream is gone: out of the auction at once, forgotten after the 1 s grace.
        wait_for(lambda: not connected(c, "ghost"), 5, "ghost to leave the auction")
        with orchestrator(cluster.url, "vpu-box", tmp_path, "vpu"):
            run = wait_run(c, uuid)
        assert run["status"] == "Success"
        assert contexts_by_name(run)["V"]["orchestrator"] == "vpu-box"
        names = [o["name"] for o in c.get("/v1/orchestrators").json()["orchestrators"]]
        assert "ghost" not in names


def _events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, object]]]:
    event = ""
    for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield event, json.loads(line.removeprefix("data: "))


def test_a_killed_orchestrator_loses_its_context_and_it_is_retried_elsewhere(
    tmp_path: Path,
) -> None:
    marker, pidfile = tmp_path / "second-attempt", tmp_path / "step.pid"
    script = f"echo $$ > {pidfile}; if [ -e {marker} ]; then exit 0; fi; touch {marker}; sleep 60"
    ottofile = f"pipeline {{ stage {{ name = 'Long' labels = 'gpu' steps {{ sh '{script}' }} }} }}"
    with (
        running_server(tmp_path / "home", **REMOTE_ONLY) as server,
        server.client() as c,
        orchestrator(server.url, "doomed", tmp_path, "gpu", extra=PID_FOLLOWING) as doomed,
        orchestrator(server.url, "cpu-box", tmp_path, "cpu", extra=PID_FOLLOWING),
    ):
        uuid = create(c, ottofile)
        wait_run(
            c, uuid, lambda r: r["batches"][0]["contexts"][0]["steps"][0]["state"] == "Running"
        )
        step_pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 5))
        os.kill(doomed.pid, signal.SIGKILL)

        # The 2 s lease runs out: lost, and retried at once as a new attempt (no other
        # orchestrator has the label yet).
        pending = wait_run(c, uuid, lambda r: contexts_by_name(r)["Long"]["state"] == "Pending")
        assert pending["state"] == "Running"
        lost = c.get(f"/v1/pipelines/{uuid}/transitions").json()["transitions"]
        moves = [(t["to"], t["reason"]) for t in lost if t["entity"] == "context"]
        assert moves[-2:] == [("Error", "agent_lost"), ("Pending", "auto_retry")]

        with orchestrator(server.url, "rescue", tmp_path, "gpu", extra=PID_FOLLOWING):
            run = wait_run(c, uuid)
        long = contexts_by_name(run)["Long"]
        assert (run["status"], long["orchestrator"], long["attempt"]) == ("Success", "rescue", 2)
        # The lost attempt's agent outlived its orchestrator, waiting to be re-adopted by
        # it; nobody will: stop its step here.
        assert not gone(step_pid)
        os.killpg(step_pid, signal.SIGKILL)


def test_orchestrators_ride_out_a_server_restart(tmp_path: Path) -> None:
    """The server restarts while a remote context runs: the orchestrator reconnects and the
    context's reports, held back meanwhile, still land."""
    port, home = free_port(), tmp_path / "home"
    home.mkdir()
    env = {**REMOTE_ONLY, "OTTO_LEASE_SECONDS": "10"}
    server = start_server(home, port, **env)
    try:
        with orchestrator(server.url, "steady", tmp_path, "gpu"), server.client() as c:
            slow = "pipeline { stage { name = 'Slow' steps { sh 'sleep 1.5; echo survived' } } }"
            uuid = create(c, slow)
            wait_run(c, uuid, lambda r: r["batches"][0]["contexts"][0]["state"] == "Running")
            stop_server(server)
            server = start_server(home, port, **env)
            run = wait_run(c, uuid)
            assert (run["status"], contexts_by_name(run)["Slow"]["orchestrator"]) == (
                "Success",
                "steady",
            )
            wait_for(lambda: connected(c, "steady"), 10, "the orchestrator to reconnect")
            again = wait_run(c, create(c, slow.replace("Slow", "Again")))
            assert again["status"] == "Success"
    finally:
        stop_server(server)


def test_a_stopped_orchestrator_hands_its_context_back_to_run_elsewhere(
    cluster: Server, tmp_path: Path
) -> None:
    marker = tmp_path / "first-attempt"
    script = f"if [ -e {marker} ]; then exit 0; fi; touch {marker}; sleep 60"
    ottofile = (
        f"pipeline {{ stage {{ name = 'Moving' labels = 'npu' steps {{ sh '{script}' }} }} }}"
    )
    with cluster.client() as c:
        with orchestrator(
            cluster.url, "leaving", tmp_path, "npu", grace=0.5, extra=PID_FOLLOWING
        ) as leaving:
            uuid = create(c, ottofile)
            wait_for(marker.exists, 10, "the first attempt to start")
            leaving.send_signal(signal.SIGTERM)  # grace over: it hands the context back
            assert leaving.wait(15) == 0
        run = c.get(f"/v1/pipelines/{uuid}").json()
        moving = contexts_by_name(run)["Moving"]
        assert (moving["state"], moving["orchestrator"]) == ("Pending", None)
        with orchestrator(cluster.url, "arriving", tmp_path, "npu", extra=PID_FOLLOWING):
            run = wait_run(c, uuid)
        moving = contexts_by_name(run)["Moving"]
        assert (run["status"], moving["orchestrator"]) == ("Success", "arriving")


def test_a_linear_batch_hands_over_between_orchestrators(cluster: Server, tmp_path: Path) -> None:
    """The contexts of one Linear batch go to different orchestrators; the second is
    auctioned, awarded and started as soon as the first ends elsewhere."""
    gate = tmp_path / "gate"
    first = Context(properties={"name": "First", "labels": "gpu"})
    waits = f"until [ -e {gate} ]; do sleep 0.05; done"
    first.steps = [Step(context=first.uuid, symbol="sh", parameters=[waits])]
    second = Context(properties={"name": "Second", "labels": "cpu"})
    second.steps = [Step(context=second.uuid, symbol="sh", parameters=["true"])]
    model = Pipeline(batches=[Batch(mode=BatchMode.LINEAR, contexts=[first, second])])
    with cluster.client() as c:
        answer = c.post("/v1/pipelines", json={"model": model.to_dict()})
        assert answer.status_code == 201, answer.text
        wait_run(c, model.uuid, lambda r: contexts_by_name(r)["First"]["state"] == "Running")
        # An auction round now: the periodic retry comes 2 s after it, First ends before.
        assert c.post("/v1/orchestrators/gpu-box/poke").status_code == 202
        gate.touch()
        run = wait_run(c, model.uuid)
        where = {name: ctx["orchestrator"] for name, ctx in contexts_by_name(run).items()}
        assert (run["status"], where) == ("Success", {"First": "gpu-box", "Second": "cpu-box"})
        moves = c.get(f"/v1/pipelines/{model.uuid}/transitions").json()["transitions"]
        ended = next(t for t in moves if t["id"] == first.uuid and t["to"] == "Success")
        began = next(t for t in moves if t["id"] == second.uuid and t["to"] == "Running")
        assert ended["seq"] < began["seq"]
        auctions = c.get("/v1/auctions").json()["auctions"]
        mine = [a for a in auctions if second.uuid in {lot["context"] for lot in a["lots"]}]
        assert [a["awards"] for a in mine] == [{second.uuid: "cpu-box"}]  # at its first auction
        opened, gap = mine[0]["opened_at"] - _at(ended), _at(began) - _at(ended)
        print(f"\nLinear hand-over: auctioned after {opened * 1000:.1f} ms, began {gap * 1000:.1f}")
        assert 0 <= opened < 1.0  # as First ended, not by the periodic retry


def _at(transition: dict[str, str]) -> float:
    return datetime.fromisoformat(transition["at"]).timestamp()
