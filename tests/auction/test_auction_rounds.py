"""Auctions against a real PSM (SQLite in a temporary directory), with in-process bidders."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchkit import Bidder, orchestrators_of, submit, wait_for
from otto.auction import Auctioneer
from otto.psm import PipelineStateMachine, open_store

ONE = "pipeline { stage { name = 'Build' steps { sh 'make' } } }"
ROUTED = """
pipeline {
    parallel {
        stage { name = 'Train' labels = 'gpu' steps { sh 'train' } }
        stage { name = 'Lint'  labels = 'cpu' steps { sh 'lint' } }
        stage { name = 'Any'                  steps { sh 'true' } }
        stage { name = 'Big'   labels = 'gpu, large' steps { sh 'big' } }
        stage { name = 'Win'   runtime = 'windows' steps { sh 'dir' } }
    }
}
"""


@pytest.fixture
def psm(tmp_path: Path) -> Iterator[PipelineStateMachine]:
    machine = PipelineStateMachine(open_store(str(tmp_path / "otto.db")))
    yield machine
    machine.close()


@pytest.fixture
def auctioneer(psm: PipelineStateMachine) -> Iterator[Auctioneer]:
    auctioneer = Auctioneer(psm, window=0.05)
    yield auctioneer
    auctioneer.stop()


def test_the_cheapest_bid_wins(psm: PipelineStateMachine, auctioneer: Auctioneer) -> None:
    dear, cheap = Bidder(auctioneer, "a-dear", cost=2.0), Bidder(auctioneer, "b-cheap", cost=0.5)
    auctioneer.register(dear)
    auctioneer.register(cheap)
    uuid = submit(psm, ONE)
    auction = auctioneer.run_round()
    assert auction is not None
    assert orchestrators_of(psm, uuid) == {"Build": "b-cheap"}
    assert [lot.name for lot in cheap.won] == ["Build"] and dear.won == []
    shown = auctioneer.auctions()[0]
    assert shown["state"] == "closed"
    assert {(b["orchestrator"], b["cost"]) for b in shown["bids"]} == {
        ("a-dear", 2.0),
        ("b-cheap", 0.5),
    }
    assert list(shown["awards"].values()) == ["b-cheap"]
    assert psm.get(uuid)["batches"][0]["state"] == "Provisioning"


def test_a_tie_goes_to_the_first_name(psm: PipelineStateMachine, auctioneer: Auctioneer) -> None:
    for name in ("zulu", "alpha", "mike"):
        auctioneer.register(Bidder(auctioneer, name, cost=1.0))
    uuid = submit(psm, ONE)
    auctioneer.run_round()
    assert orchestrators_of(psm, uuid) == {"Build": "alpha"}


def test_contexts_go_where_their_requirements_fit(
    psm: PipelineStateMachine, auctioneer: Auctioneer
) -> None:
    gpu = Bidder(auctioneer, "gpu-box", labels="gpu,large", cost=1.0)
    cpu = Bidder(auctioneer, "cpu-box", labels="cpu", cost=2.0)
    auctioneer.register(gpu)
    auctioneer.register(cpu)
    uuid = submit(psm, ROUTED)
    auctioneer.run_round()
    assert orchestrators_of(psm, uuid) == {
        "Train": "gpu-box",
        "Lint": "cpu-box",
        "Any": "gpu-box",  # both can: the cheaper one
        "Big": "gpu-box",
        "Win": None,  # no Windows orchestrator: it waits
    }
    assert psm.get(uuid)["batches"][0]["state"] == "AuctionStarted"
    assert [c["name"] for c in psm.open_contexts()] == ["Win"]


def test_without_a_bid_a_context_waits_and_goes_to_a_newcomer(
    psm: PipelineStateMachine, auctioneer: Auctioneer
) -> None:
    auctioneer.start()
    cpu = Bidder(auctioneer, "cpu-box", labels="cpu")
    auctioneer.register(cpu)
    uuid = submit(psm, "pipeline { stage { name = 'T' labels = 'gpu' steps { sh 'train' } } }")
    time.sleep(0.3)  # rounds happen; nobody there can run it
    assert orchestrators_of(psm, uuid) == {"T": None}
    assert cpu.heard == []  # not even invited: it cannot run the context
    gpu = Bidder(auctioneer, "gpu-box", labels="gpu")
    auctioneer.register(gpu)  # registering re-auctions what waits
    wait_for(lambda: gpu.won, 30, "the award to the newcomer")
    assert orchestrators_of(psm, uuid) == {"T": "gpu-box"}


def test_an_invited_bidder_that_declines_leaves_the_context_open(
    psm: PipelineStateMachine, auctioneer: Auctioneer
) -> None:
    full = Bidder(auctioneer, "full")
    full.announce = lambda auction: auctioneer.bid(auction.id, "full", {})  # type: ignore[method-assign]
    auctioneer.register(full)
    uuid = submit(psm, ONE)
    auction = auctioneer.run_round()
    assert auction is not None and auction.answered == {"full"} and auction.awards == {}
    assert orchestrators_of(psm, uuid) == {"Build": None}
    auctioneer.register(Bidder(auctioneer, "free"))
    auctioneer.run_round()
    assert orchestrators_of(psm, uuid) == {"Build": "free"}


def test_the_window_closes_early_when_everyone_answered(
    psm: PipelineStateMachine,
) -> None:
    auctioneer = Auctioneer(psm, window=30.0)
    auctioneer.register(Bidder(auctioneer, "one"))
    auctioneer.register(Bidder(auctioneer, "two", cost=3.0))
    submit(psm, ONE)
    started = time.perf_counter()
    auction = auctioneer.run_round()
    assert time.perf_counter() - started < 10.0  # not the 30 s window
    assert auction is not None and auction.answered == {"one", "two"}


def test_a_silent_bidder_costs_the_window_not_more(psm: PipelineStateMachine) -> None:
    auctioneer = Auctioneer(psm, window=0.5)
    auctioneer.register(Bidder(auctioneer, "quick", cost=5.0))
    auctioneer.register(Bidder(auctioneer, "silent", answers=False))
    uuid = submit(psm, ONE)
    started = time.perf_counter()
    auction = auctioneer.run_round()
    took = time.perf_counter() - started
    assert 0.45 <= took < 5.0
    assert auction is not None and auction.answered == {"quick"}
    assert orchestrators_of(psm, uuid) == {"Build": "quick"}


def test_one_local_bidder_makes_an_auction_almost_free(psm: PipelineStateMachine) -> None:
    auctioneer = Auctioneer(psm)  # the default window, 50 ms: never waited for
    auctioneer.register(Bidder(auctioneer, "local"))
    rounds, auctions = [], []
    for _ in range(30):
        submit(psm, ONE)
        started = time.perf_counter()
        auction = auctioneer.run_round()
        rounds.append(time.perf_counter() - started)
        assert auction is not None and auction.closed_at is not None
        auctions.append(auction.closed_at - auction.opened_at)
    own = statistics.median(auctions) * 1000
    whole = statistics.median(rounds) * 1000
    print(f"\nauction with one local bidder: {own:.3f} ms (announce to close, median of 30);")
    print(f"whole round with the PSM's reads and the award's commit: {whole:.3f} ms")
    assert own < 20
    assert whole < 100
