"""The webhooks' tables in the PSM's database, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from otto.psm import PipelineStateMachine
from otto.webhooks.ledger import Ledger, Push, RunInfo


def test_deliveries_are_recorded_once_and_queued_until_finished(
    psm: PipelineStateMachine,
) -> None:
    ledger = Ledger(psm.store)
    Ledger(psm.store)  # a restart: the tables are kept
    push = Push("d-1", "app", "refs/heads/main", "a" * 40, "git://h/app.git", "acme/app")
    assert ledger.record("d-1", "push", "app", push) is True
    assert ledger.record("d-1", "push", "app", push) is False
    assert ledger.record("d-2", "issues", "app", None, "not handled") is True
    assert ledger.queued() == [push]
    ledger.finish("d-1", "created", "some-uuid")
    assert ledger.queued() == []


def test_runs_are_found_by_pipeline(psm: PipelineStateMachine) -> None:
    ledger = Ledger(psm.store)
    run = RunInfo("p-1", "app", "acme/app", "git://h/app.git", "refs/heads/main", "b" * 40, False)
    ledger.add_run(run)
    assert ledger.run("p-1") == run
    assert ledger.run("p-2") is None
    ledger.drop_run("p-1")
    assert ledger.run("p-1") is None
