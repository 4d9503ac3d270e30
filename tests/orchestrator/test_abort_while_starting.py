"""An abort that arrives after a context is claimed but before its agent runs is not lost:
the agent is stopped as soon as it starts, not at the next lease renewal."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from otto.auction import Auctioneer
from otto.isolation.policy import IsolationPolicy
from otto.orchestrator import Orchestrator
from otto.parser import parse
from otto.psm import PipelineStateMachine, open_store
from otto.psm.records import WorkOrder
from serverkit import wait_for


class HeldPsm(PipelineStateMachine):
    """The real PSM; a claim, once made, returns only when the test lets it go, which holds
    the orchestrator between its claim and its agent's start."""

    def __init__(self, url: str) -> None:
        super().__init__(open_store(url), lease_seconds=300.0)
        self.claimed = threading.Event()
        self.go = threading.Event()

    def claim_work(
        self, context: str, orchestrator: str, isolation: str | None = None
    ) -> WorkOrder:
        order = super().claim_work(context, orchestrator, isolation)
        self.claimed.set()
        self.go.wait(30)
        return order


def test_an_abort_between_claim_and_start_stops_the_agent_at_once(tmp_path: Path) -> None:
    psm = HeldPsm(f"sqlite:///{tmp_path / 'otto.db'}")
    auctioneer = Auctioneer(psm)
    local = Orchestrator(
        psm,
        auctioneer,
        str(tmp_path / "objects"),
        tmp_path / "workspaces",
        lease_seconds=300.0,
        isolation=IsolationPolicy(sandbox="none"),
    )
    auctioneer.register(local)
    psm.events.subscribe(local.watch)  # as `otto server` wires it: aborts heard at once
    local.start()
    auctioneer.start()
    try:
        time.sleep(1.0)  # past the renewal round made at start: the next is 100 s away
        uuid = psm.create(parse("pipeline { stage { steps { sh 'sleep 300' } } }")).uuid
        assert psm.claimed.wait(60), "the context was never claimed"
        psm.abort(uuid)
        psm.go.set()
        started = time.monotonic()
        run = wait_for(lambda: (r := psm.get(uuid))["state"] == "Complete" and r, 60, "the end")
        # Lease renewal (every 100 s here) would have stopped it too, but only much later.
        assert time.monotonic() - started < 60
        assert run["status"] == "Aborted"
        assert run["batches"][0]["contexts"][0]["status"] == "Aborted"
    finally:
        psm.go.set()
        auctioneer.stop()
        local.stop(grace=0)
        psm.close()
