"""An orchestrator's reports while the PSM's disk is full: an outcome is tried
again until it lands (within the lease), so the context keeps its `disk_full` reason
instead of ending `agent_lost` when its lease runs out; other failures are not retried."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from otto.isolation.policy import IsolationPolicy
from otto.orchestrator import Orchestrator
from otto.psm import Conflict


class _Bids:
    def bid(self, auction_id: int, orchestrator: str, costs: dict[str, float]) -> Any:
        return None

    def poke(self) -> None:
        pass


def _orchestrator(tmp_path: Path, told: list[tuple[str, str]] | None = None) -> Orchestrator:
    return Orchestrator(
        executor=None,  # type: ignore[arg-type]  # only `_report` is exercised
        bids=_Bids(),
        objects_url=str(tmp_path / "objects"),
        workspace_root=tmp_path / "ws",
        lease_seconds=5.0,
        isolation=IsolationPolicy(sandbox="none"),
        on_trouble=(lambda kind, detail: told.append((kind, detail))) if told is not None else None,
    )


def test_an_outcome_waits_for_space(tmp_path: Path) -> None:
    calls: list[int] = []

    def report() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database or disk is full")

    _orchestrator(tmp_path)._report(report, patient=True)
    assert len(calls) == 3  # landed once space was back


def test_other_failures_are_not_retried(tmp_path: Path) -> None:
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise Conflict("stale lease", "Complete")

    def broken() -> None:
        calls.append(1)
        raise ValueError("something else")

    orchestrator = _orchestrator(tmp_path)
    orchestrator._report(refused, patient=True)
    orchestrator._report(broken, patient=True)
    assert len(calls) == 2


def test_an_agents_disk_full_reaches_the_server(tmp_path: Path) -> None:
    told: list[tuple[str, str]] = []
    orchestrator = _orchestrator(tmp_path, told)
    orchestrator._tell_trouble("disk_full: storing log p/c/s.log failed: no space")
    orchestrator._tell_trouble("exit code 1")
    assert told == [("disk_full", "an agent's storing log p/c/s.log failed: no space")]
