"""Test kit for auctions and orchestrators: in-process bidders, runs over HTTP, waits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from otto.auction import Auction, Auctioneer, Capabilities, Lot
from otto.auction.requirements import labels_of
from otto.parser import parse
from otto.psm import PipelineStateMachine
from serverkit import wait_for

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


def submit(psm: PipelineStateMachine, text: str) -> str:
    return psm.create(parse(text, filename="Ottofile")).uuid


def orchestrators_of(psm: PipelineStateMachine, uuid: str) -> dict[str, str | None]:
    """Context name → the orchestrator it was awarded to (None: nobody yet)."""
    view = psm.get(uuid)
    return {c["name"]: c["orchestrator"] for b in view["batches"] for c in b["contexts"]}


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


def gone(pid: int) -> bool:
    """The process has ended (a zombie counts: it runs no more)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")
