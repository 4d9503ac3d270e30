"""The webhooks' tables in the PSM's database, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from otto.psm import PipelineStateMachine
from otto.webhooks.inbox import (
    CREATED,
    IGNORED,
    QUEUED,
    REDELIVERY,
    REFUSED,
    Inbox,
    Push,
    Received,
    RunInfo,
)


def test_deliveries_are_recorded_once_and_queued_until_finished(
    psm: PipelineStateMachine,
) -> None:
    inbox = Inbox(psm.store)
    Inbox(psm.store)  # a restart: the tables are kept
    push = Push("d-1", "app", "refs/heads/main", "a" * 40, "git://h/app.git", "acme/app")
    queued = Received("github", "push", "d-1", QUEUED, 202, project="app")
    assert inbox.record(queued, push).verdict == QUEUED
    again = inbox.record(queued, push)
    assert again.verdict == REDELIVERY and again.pipeline is None
    ignored = Received("github", "issues", "d-2", IGNORED, 202, "not handled", "app")
    assert inbox.record(ignored, None).verdict == IGNORED
    assert inbox.queued() == [push]
    inbox.finish("d-1", CREATED, "", "some-uuid")
    assert inbox.queued() == []
    redelivered = inbox.record(queued, push)  # names the run the first one created
    assert (redelivered.verdict, redelivered.pipeline) == (REDELIVERY, "some-uuid")
    inbox.refused(Received("github", "push", "d-1", REFUSED, 401, "bad signature"))
    listed = [(r.delivery, r.verdict, r.pipeline) for r in inbox.received(10)]
    assert listed == [
        ("d-1", REFUSED, None),
        ("d-1", REDELIVERY, "some-uuid"),
        ("d-2", IGNORED, None),
        ("d-1", REDELIVERY, None),
        ("d-1", CREATED, "some-uuid"),
    ]
    assert [r.delivery for r in inbox.received(2)] == ["d-1", "d-1"]


def test_only_the_latest_received_deliveries_are_kept(psm: PipelineStateMachine) -> None:
    inbox = Inbox(psm.store, keep=3, prune_every=2)
    for n in range(8):
        inbox.refused(Received("gitlab", "Push Hook", f"d-{n}", REFUSED, 401, "no"))
    kept = [r.delivery for r in inbox.received(100)]
    assert kept[:3] == ["d-7", "d-6", "d-5"] and len(kept) <= 3 + 1  # pruned every 2nd


def test_runs_are_found_by_pipeline(psm: PipelineStateMachine) -> None:
    inbox = Inbox(psm.store)
    run = RunInfo("p-1", "app", "acme/app", "git://h/app.git", "refs/heads/main", "b" * 40, False)
    inbox.add_run(run)
    assert inbox.run("p-1") == run
    assert inbox.run("p-2") is None
    inbox.drop_run("p-1")
    assert inbox.run("p-1") is None
