"""An attempt lost to the infrastructure runs again (`retry_on`, by default once): a lease
lost while its agent still ran here (the new attempt, awarded to this same orchestrator,
starts once the old agent, refused at its next renewal, has stopped), and an agent killed
mid-step (`agent_lost`, not a failure of the step)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otto.auction import Auctioneer
from otto.isolation.policy import IsolationPolicy
from otto.orchestrator import Orchestrator
from otto.parser import parse
from otto.psm import PipelineStateMachine, open_store
from serverkit import wait_for

Served = tuple[PipelineStateMachine, Orchestrator]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A PSM, its auctioneer and one local orchestrator (unsandboxed), 3 s leases."""
    psm = PipelineStateMachine(open_store(f"sqlite:///{tmp_path / 'otto.db'}"), lease_seconds=3.0)
    auctioneer = Auctioneer(psm)
    local = Orchestrator(
        psm,
        auctioneer,
        str(tmp_path / "objects"),
        tmp_path / "workspaces",
        lease_seconds=3.0,
        isolation=IsolationPolicy(sandbox="none"),
    )
    auctioneer.register(local)
    local.start()
    auctioneer.start()
    try:
        yield psm, local
    finally:
        auctioneer.stop()
        local.stop(grace=0)
        psm.close()


def marking(psm: PipelineStateMachine, marks: Path) -> str:
    """A run whose step notes its attempt in `marks`, then takes 2 s."""
    step = f"echo $OTTO_ATTEMPT >> {marks}; sleep 2"
    return psm.create(parse(f"pipeline {{ stage {{ steps {{ sh '{step}' }} }} }}")).uuid


def second_attempt_succeeds(psm: PipelineStateMachine, uuid: str, marks: Path) -> list[str]:
    run = wait_for(lambda: (r := psm.get(uuid))["state"] == "Complete" and r, 20.0, "the end")
    context = run["batches"][0]["contexts"][0]
    assert (run["status"], context["attempt"]) == ("Success", 2)
    assert marks.read_text().split() == ["1", "2"]
    return [t.reason or "" for t in psm.transitions(uuid) if t.id == context["uuid"]]


def test_a_new_attempt_awarded_here_runs_after_the_lost_one(served: Served, tmp_path: Path) -> None:
    psm, _ = served
    marks = tmp_path / "marks"
    uuid = marking(psm, marks)
    wait_for(lambda: marks.exists(), 15.0, "the first attempt to start")
    assert psm.expire_leases(now=time.time() + 3600) == 1  # lost, as if it stalled
    assert "agent_lost" in second_attempt_succeeds(psm, uuid, marks)


def test_an_agent_killed_mid_step_is_lost_and_its_context_runs_again(
    served: Served, tmp_path: Path
) -> None:
    psm, local = served
    marks = tmp_path / "marks"
    uuid = marking(psm, marks)
    wait_for(lambda: marks.exists(), 15.0, "the first attempt to start")
    context = psm.get(uuid)["batches"][0]["contexts"][0]["uuid"]
    os.kill(local._running[context].agent.pid, signal.SIGKILL)  # as the kernel's OOM killer would
    reasons = second_attempt_succeeds(psm, uuid, marks)
    lost = next(r for r in reasons if r.startswith("agent_lost"))
    assert lost == "agent_lost: its agent exited (-9) unfinished"
    assert "auto_retry" in reasons
