"""Two replicas on one PostgreSQL schema, each with its own auctioneer and bidders, auction
the same batches at once: the database makes one award per context attempt."""

from __future__ import annotations

from collections import Counter

import pytest
from psmkit import Replicas, all_transitions, contexts, make_pipeline

from orchkit import Bidder
from otto.auction import Auctioneer, Capabilities, Lot
from otto.auction.remote_bidder import Orchestrators, Registration
from otto.psm import Conflict
from otto.psm.store import queries
from otto.status import Status
from serverkit import wait_for

PIPELINES = 30


class Runner(Bidder):
    """A bidder that claims what it wins on its own replica and ends it at once."""

    def __init__(self, auctioneer: Auctioneer, name: str) -> None:
        super().__init__(auctioneer, name)
        self.refused: list[tuple[str, Exception]] = []
        self.told_lost: list[str] = []

    def lost(self, lot: Lot) -> None:
        self.told_lost.append(lot.context)

    def awarded(self, lot: Lot) -> None:
        super().awarded(lot)
        psm = self.auctioneer.psm
        try:
            lease = psm.claim(lot.context, self.name)
            psm.context_finished(lease, Status.SUCCESS)
        except Exception as exc:  # a double award: the loser's claim is refused
            self.refused.append((lot.context, exc))


def test_two_auctioneers_make_one_award_per_context(replicas: Replicas) -> None:
    auctioneers = [Auctioneer(psm, window=0.02) for psm in replicas]
    runners = [Runner(a, f"orch-{i}") for i, a in enumerate(auctioneers)]
    for auctioneer, runner in zip(auctioneers, runners, strict=True):
        auctioneer.register(runner)
        auctioneer.start()
    try:
        uuids = []
        for i in range(PIPELINES):  # each replica hears of the other's runs by NOTIFY
            model = make_pipeline(("Parallel", [1, 1, 1]), ("Linear", [1, 1]), ("Fanout", [1]))
            uuids.append(replicas[i % 2].create(model).uuid)
        first = replicas[0]
        wait_for(lambda: all(first.get(u)["state"] == "Complete" for u in uuids), 60, "every run")
    finally:
        for auctioneer in auctioneers:
            auctioneer.stop()

    won = Counter(lot.context for runner in runners for lot in runner.won)
    assert won and max(won.values()) == 1, [c for c, n in won.items() if n > 1]
    assert [r.refused for r in runners] == [[], []]
    every = {c["uuid"] for u in uuids for c in contexts(first, u)}
    assert set(won) == every
    starts = Counter(
        t["id"]
        for t in all_transitions(first)
        if t["entity"] == "context" and t["to_state"] == "Running"
    )
    assert set(starts.values()) == {1} and set(starts) == every
    # Both auctioned: each won some; what one lost went to the other.
    assert all(runner.won for runner in runners)
    for mine, theirs, auctioneer in [(*runners, auctioneers[0]), (*runners[::-1], auctioneers[1])]:
        lost = {c for auction in auctioneer.auctions() for c in auction["lost"]}
        assert lost <= {lot.context for lot in theirs.won} - {lot.context for lot in mine.won}
        assert sorted(mine.told_lost) == sorted(lost)
    print("lost:", sum(len(h["lost"]) for a in auctioneers for h in a.auctions()))


def test_a_second_award_of_the_same_attempt_is_refused(replicas: Replicas) -> None:
    first, second = replicas
    uuid = first.create(make_pipeline(("Parallel", [1, 1]))).uuid
    ctx = contexts(first, uuid)[0]["uuid"]
    first.award(ctx, "orch-a")
    with pytest.raises(Conflict, match="already awarded to orch-a"):
        second.award(ctx, "orch-b")
    with pytest.raises(Conflict, match="already awarded"):  # the guard under the rules
        second.store.write(lambda tx: queries.assign(tx, ctx, "orch-b", 0))
    assert contexts(first, uuid)[0]["orchestrator"] == "orch-a"
    # Given back, it may be awarded again (once).
    first.release(ctx, "orch-a")
    second.award(ctx, "orch-b")
    assert contexts(first, uuid)[0]["orchestrator"] == "orch-b"


def test_a_replica_tells_an_orchestrator_the_awards_another_made(replicas: Replicas) -> None:
    first, second = replicas
    uuid = first.create(make_pipeline(("Parallel", [1, 1]), ("Linear", [1]))).uuid
    c0, c1, later = (c["uuid"] for c in contexts(first, uuid))
    first.award(c0, "worker")  # its batch still waits for a bid on c1: not claimable yet
    registries: list[Orchestrators] = []

    def registry() -> Orchestrators:
        registries.append(Orchestrators(Auctioneer(second), second, grace=0.2))
        return registries[-1]

    caps = Capabilities("linux", "x86_64", 2, 1024)
    try:
        bidder = registry().register(Registration("worker", caps, 2, 1.0))
        assert bidder.held == {}
        first.award(c1, "other")  # the batch is provisioned: c0 may be claimed now
        again = registry().register(Registration("worker", caps, 2, 1.0))
        assert set(again.held) == {c0}
        # Not connected within the grace period: its awards go back; the others' too,
        # after the grace a replica that starts gives every holder.
        wait_for(lambda: [a["uuid"] for a in second.unclaimed_awards()] == [c1], 5, "c0 back")
        registry().expect_holders()
        wait_for(lambda: second.unclaimed_awards() == [], 5, "the awards to go back")
        assert {c["uuid"]: c["orchestrator"] for c in contexts(first, uuid)} == {
            c0: None,
            c1: None,
            later: None,
        }
    finally:
        for each in registries:
            each.close()
