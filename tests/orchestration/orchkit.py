"""Test kit for orchestration: in-process bidders, real `otto orchestrator` processes, waits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from otto.auction import Auction, Auctioneer, Capabilities, Lot
from otto.auction.requirements import labels_of
from otto.parser import parse
from otto.psm import PipelineStateMachine

# -- in process ------------------------------------------------------------------------


class Bidder:
    """A real `Bidder` living in the test: bids `cost` for what it can run (or stays silent)."""

    def __init__(
        self,
        auctioneer: Auctioneer,
        name: str,
        labels: str = "",
        cost: float = 1.0,
        answers: bool = True,
        os_name: str = "linux",
    ) -> None:
        self.auctioneer = auctioneer
        self.name = name
        self.cost = cost
        self.answers = answers
        self.capabilities = Capabilities(os_name, "x86_64", 2, 1024, labels_of(labels))
        self.heard: list[int] = []
        self.won: list[Lot] = []

    def announce(self, auction: Auction) -> None:
        self.heard.append(auction.id)
        if self.answers:
            costs = {
                lot.context: self.cost
                for lot in auction.lots
                if self.capabilities.satisfy(lot.needs)
            }
            self.auctioneer.bid(auction.id, self.name, costs)

    def awarded(self, lot: Lot) -> None:
        self.won.append(lot)

    def moved(self, pipeline: str, context: str, state: str) -> None:
        pass


def submit(psm: PipelineStateMachine, text: str) -> str:
    return psm.create(parse(text, filename="Ottofile")).uuid


def orchestrators_of(psm: PipelineStateMachine, uuid: str) -> dict[str, str | None]:
    """Context name → the orchestrator it was awarded to (None: nobody yet)."""
    view = psm.get(uuid)
    return {c["name"]: c["orchestrator"] for b in view["batches"] for c in b["contexts"]}


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "it") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# -- over HTTP ---------------------------------------------------------------------------


def create(client: httpx.Client, ottofile: str) -> str:
    answer = client.post("/v1/pipelines", json={"ottofile": ottofile})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["uuid"])


def contexts_by_name(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for b in run["batches"] for c in b["contexts"]}


def wait_run(
    client: httpx.Client,
    uuid: str,
    until: Callable[[dict[str, Any]], bool] | None = None,
    timeout: float = 20.0,
) -> dict[str, Any]:
    """The pipeline's view once `until` holds (default: the run is Complete)."""
    test = until or (lambda run: run["state"] == "Complete")

    def check() -> dict[str, Any] | None:
        run = client.get(f"/v1/pipelines/{uuid}").json()
        return run if test(run) else None

    return dict(wait_for(check, timeout, f"pipeline {uuid}"))


def connected(client: httpx.Client, name: str) -> bool:
    answer = client.get("/v1/orchestrators")
    return any(o["name"] == name and o["connected"] for o in answer.json()["orchestrators"])


@contextmanager
def orchestrator(
    url: str,
    name: str,
    home: Path,
    labels: str = "",
    token: str | None = None,
    grace: float = 2.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """A real `otto orchestrator` process, connected when this yields; stopped after."""
    process = start_orchestrator(url, name, home, labels, token, grace)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with httpx.Client(base_url=url, headers=headers, timeout=5) as client:
            wait_for(lambda: connected(client, name), 20, f"orchestrator {name}")
        yield process
    finally:
        stop_orchestrator(process)


def start_orchestrator(
    url: str,
    name: str,
    home: Path,
    labels: str = "",
    token: str | None = None,
    grace: float = 2.0,
) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "otto.cli", "orchestrator", "--server", url, "--name", name]
    args += ["--workspace", str(home / name), "--capacity", "2", "--grace", str(grace)]
    if labels:
        args += ["--labels", labels]
    env = {k: v for k, v in os.environ.items() if k != "OTTO_TOKEN"}
    if token:
        env["OTTO_TOKEN"] = token
    log = open(home / f"orchestrator-{name}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_orchestrator(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def gone(pid: int) -> bool:
    """The process has ended (a zombie counts: it runs no more)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")
