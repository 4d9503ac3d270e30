"""Outbound webhooks and commit statuses through the outbox, on SQLite and PostgreSQL:
a real PSM, the real dispatcher and sender threads, subscribers over real HTTP."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hookkit import FakeSubscriber, fake_github, fake_subscriber, silent_server

from otto.parser import parse
from otto.psm import PipelineStateMachine
from otto.status import Status
from otto.webhooks.dispatch import Dispatcher
from otto.webhooks.inbox import Inbox, RunInfo
from otto.webhooks.outbox import Outbox
from otto.webhooks.projects import Project
from otto.webhooks.sender import Sender
from otto.webhooks.statuses import status_entries
from otto.webhooks.subscribers import webhook_entries
from serverkit import wait_for

SECRET = "outbound-secret"
FAST = (0.05, 0.05, 0.05)  # retry delays


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.setenv("GH_TOKEN", "ghp_outbound")


def project(**fields: Any) -> Project:
    return Project.model_validate(
        {"name": "app", "source": {"url": "git://127.0.0.1/app.git"}, "secret_env": "S", **fields}
    )


@contextmanager
def outbound(
    psm: PipelineStateMachine,
    projects: list[Project],
    backoff: tuple[float, ...] = FAST,
    **sending: Any,
) -> Iterator[Outbox]:
    """The dispatcher and the sender, as `otto server` runs them, until the block ends
    (`sending`: the sender's `workers` and `timeout`)."""
    outbox = Outbox(psm.store, start=psm.events.last_seq)
    sender = Sender(outbox, backoff, **sending)
    sources = [status_entries, webhook_entries]
    inbox = Inbox(psm.store)
    url = "http://otto.example"
    dispatcher = Dispatcher(psm, inbox, outbox, lambda: projects, sources, url, sender.wake.set)
    sender.start()
    dispatcher.start()
    try:
        yield outbox
    finally:
        dispatcher.stop()
        sender.stop()


def pushed(psm: PipelineStateMachine, broken: bool = False) -> str:
    """A pipeline as the push worker creates one; `broken`: rejected for its Ottofile."""
    model = parse("pipeline { steps { sh 'true' } }", "Ottofile")
    sha = uuid.uuid4().hex + "0" * 8
    Inbox(psm.store).add_run(
        RunInfo(model.uuid, "app", "acme/app", "git://127.0.0.1/app.git", "refs/heads/main",
                sha, True)
    )  # fmt: skip
    rejected = ("config_error", "Ottofile:1:1: expected 'pipeline'") if broken else None
    return psm.create(model, repo="git://127.0.0.1/app.git", ref="refs/heads/main", sha=sha,
                      rejected=rejected).uuid  # fmt: skip


def succeed(psm: PipelineStateMachine, pipeline: str) -> None:
    """Execute the one context of a pipeline, as an orchestrator would."""
    (ctx,) = [c for c in psm.open_contexts() if c["pipeline"] == pipeline]
    psm.award(ctx["uuid"], "orch-1")
    lease = psm.claim(ctx["uuid"], "orch-1")
    (step,) = psm.get(pipeline)["batches"][0]["contexts"][0]["steps"]
    psm.step_started(lease, step["uuid"])
    psm.step_finished(lease, step["uuid"], exit_code=0)
    psm.context_finished(lease, Status.SUCCESS)
    assert psm.get(pipeline)["status"] == "Success"


def history(psm: PipelineStateMachine, pipeline: str) -> list[tuple[str, str, str | None]]:
    return [(t.entity, t.to_state, t.status) for t in psm.transitions(pipeline)]


def sub(fake: FakeSubscriber, **fields: Any) -> dict[str, Any]:
    return {"url": fake.url, "secret_env": "HOOK_SECRET", **fields}


def test_subscribers_get_the_signed_transitions_they_asked_for(psm: PipelineStateMachine) -> None:
    with fake_subscriber(SECRET) as everything, fake_subscriber(SECRET) as endings:
        hooks = [sub(everything), sub(endings, entities=["pipeline"], states=["Complete"])]
        with outbound(psm, [project(webhooks=hooks)]):
            run = pushed(psm)
            succeed(psm, run)
            psm.create(parse("pipeline { steps { sh 'true' } }"))  # not from a push
            expected = history(psm, run)
            wait_for(lambda: len(everything.received) >= len(expected), what="every transition")
            wait_for(lambda: endings.received, what="the ending")
    assert everything.problems == [] and endings.problems == []
    assert sorted(everything.transitions()) == sorted(expected)
    assert endings.transitions() == [("pipeline", "Complete", "Success")]
    ids = everything.deliveries() + endings.deliveries()
    assert len(set(ids)) == len(ids)
    body = endings.received[0]["body"]
    assert body["event"] == "transition" and body["project"] == "app"
    assert body["pipeline"]["uuid"] == run and body["pipeline"]["repository"] == "acme/app"
    assert body["pipeline"]["url"] == f"http://otto.example/v1/pipelines/{run}"
    assert body["transition"]["seq"] == psm.transitions(run)[-1].seq


def test_failed_deliveries_are_retried_then_given_up_and_can_be_replayed(
    psm: PipelineStateMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UNSET_SECRET", raising=False)
    only_end = {"entities": ["pipeline"], "states": ["Complete"]}
    with (
        fake_subscriber(SECRET, failures=2) as flaky,
        fake_subscriber(SECRET, failures=100, fail=500) as down,
    ):
        hooks = [
            sub(flaky, **only_end),
            sub(down, **only_end),
            {"url": down.url + "/x", "secret_env": "UNSET_SECRET", **only_end},
        ]
        with outbound(psm, [project(webhooks=hooks)]) as outbox:
            pushed(psm, broken=True)
            wait_for(lambda: flaky.received, what="the flaky subscriber to get it")
            wait_for(lambda: len(outbox.list(state="failed")[0]) == 2, what="two to fail")
            log = {d.url: d for d in outbox.list()[0]}
            assert (log[flaky.url].state, log[flaky.url].attempts) == ("delivered", 3)
            gone = log[down.url]
            assert (gone.attempts, gone.last_code) == (1 + len(FAST), 500)
            assert gone.last_error is not None and gone.last_error.startswith("HTTP 500")
            unset = log[down.url + "/x"]
            assert unset.attempts == 1 and "UNSET_SECRET is not set" in str(unset.last_error)
            assert down.attempts == 1 + len(FAST)  # the unsigned one was never sent
            with down.lock:
                down.failures = 0
            copy = outbox.replay(gone.id)
            assert copy is not None
            wait_for(lambda: down.received, what="the replay")
    assert down.deliveries() == [copy.id] and flaky.deliveries() == [log[flaky.url].id]
    assert outbox.get(gone.id).state == "failed"  # type: ignore[union-attr]
    assert outbox.get(copy.id).state == "delivered"  # type: ignore[union-attr]


def test_delivery_never_holds_up_the_state_machine(psm: PipelineStateMachine) -> None:
    hold = threading.Event()
    with (
        fake_subscriber(SECRET, hold=hold) as stuck,
        outbound(psm, [project(webhooks=[sub(stuck)])]),
    ):
        run = pushed(psm)
        succeed(psm, run)  # while the subscriber answers nothing at all
        assert psm.get(run)["state"] == "Complete"
        assert stuck.received == []
        hold.set()
        wait_for(lambda: len(stuck.received) == len(history(psm, run)), what="all of them")
    assert sorted(stuck.transitions()) == sorted(history(psm, run))


def test_a_restart_neither_loses_nor_repeats_a_delivery(psm: PipelineStateMachine) -> None:
    with fake_subscriber(SECRET) as hook:
        hooks = [sub(hook, entities=["pipeline"])]
        with outbound(psm, [project(webhooks=hooks)]):
            first = pushed(psm)
            wait_for(lambda: len(hook.received) == 2, what="Pending, Running")
        second = pushed(psm, broken=True)  # while nothing is listening
        succeed(psm, first)
        # As if the process died before it wrote its cursor: from the start again.
        psm.store.write(lambda tx: tx.run("UPDATE outbound_cursor SET seq = 0"))
        with outbound(psm, [project(webhooks=hooks)]):
            wait_for(lambda: len(hook.received) == 5, what="the rest")
            threading.Event().wait(0.5)  # room for (wrong) duplicates to arrive
    seen = [(r["body"]["pipeline"]["uuid"], r["body"]["transition"]["to"]) for r in hook.received]
    assert sorted(seen) == sorted(
        [(first, "Pending"), (first, "Running"), (first, "Complete"),
         (second, "Pending"), (second, "Complete")]
    )  # fmt: skip
    assert len(set(hook.deliveries())) == 5


def test_a_shutdown_gives_back_the_rows_it_claimed_but_never_began(
    psm: PipelineStateMachine,
) -> None:
    """One sending thread, held by a subscriber that never answers: the other lane's
    row waits its turn when the server stops, and is due again at once, not held for the
    claim's two minutes (a restart would send it only then)."""
    with silent_server() as first, silent_server() as second:
        hooks = [
            {"url": f"http://{s.address}/hook", "secret_env": "HOOK_SECRET"}
            for s in (first, second)
        ]
        with outbound(psm, [project(webhooks=hooks)], workers=1, timeout=1.0) as outbox:
            pushed(psm)

            def claimed() -> bool:
                rows = outbox.list()[0]
                return len(rows) >= 2 and all(
                    (r.next_attempt_at or 0) > time.time() + 60 for r in rows
                )

            wait_for(claimed, what="both lanes claimed, one sending")
        rows = outbox.list()[0]
    assert {r.state for r in rows} == {"pending"}
    assert all((r.next_attempt_at or 0) <= time.time() for r in rows)


def test_statuses_due_while_down_are_sent_after_a_restart_in_order(
    psm: PipelineStateMachine,
) -> None:
    with fake_github("ghp_outbound") as github:
        statuses = {"api_url": github.url, "token_env": "GH_TOKEN"}
        github.down = True
        with outbound(psm, [project(statuses=statuses)], backoff=(0.05,) * 50):
            run, broken = pushed(psm), pushed(psm, broken=True)
            succeed(psm, run)
            wait_for(lambda: github.refused >= 4, what="GitHub to refuse some")
        github.down = False  # the server is down now; GitHub is back
        with outbound(psm, [project(statuses=statuses)], backoff=(0.05,) * 50):
            shas = {r: psm.get(r)["sha"] for r in (run, broken)}
            wait_for(lambda: len(github.statuses) == 4, what="four statuses")
    assert github.of(shas[run]) == ["pending", "success"]
    assert github.of(shas[broken]) == ["pending", "error"]
    (error,) = [s for s in github.statuses if s["state"] == "error"]
    assert error["description"] == "Otto: Error: Ottofile:1:1: expected 'pipeline'"
    assert github.problems == []
