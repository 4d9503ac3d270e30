"""The event hub and concurrent writers, on both backends."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from typing import Any

import pytest
from psmkit import (
    ORCH,
    all_transitions,
    award_all,
    check_log,
    check_pipeline,
    contexts,
    drive,
    make_pipeline,
    wait_for,
)

from otto.psm import Conflict, Transition
from otto.psm.events import EventHub


def logged(psm: Any) -> list[Transition]:
    return [Transition.from_row(r) for r in all_transitions(psm)]


def small_hub(psm: Any, capacity: int) -> EventHub:
    listener = getattr(psm.store, "_listener", None)
    if listener is not None:  # one hub per store: the old hub's LISTEN connection goes
        listener.close()
    hub = EventHub(psm.store, capacity=capacity)
    psm.events = hub
    psm.store.on_commit = hub.publish
    return hub


def some_runs(psm: Any, n: int = 3) -> list[str]:
    uuids = []
    for i in range(n):
        uuid = psm.create(make_pipeline(("Fanout", [1, 1]), ("Linear", [1, 0]))).uuid
        drive(psm, uuid, lambda step, i=i: 1 if i == 1 else 0)
        uuids.append(uuid)
    return uuids


def test_after_returns_the_committed_log(psm: Any) -> None:
    uuids = some_runs(psm)
    log = logged(psm)
    assert psm.events.last_seq == log[-1].seq
    assert psm.events.after(0, limit=100_000) == log  # from the ring: the same records
    paged, cursor = [], 0
    while page := psm.events.after(cursor, limit=7):
        assert len(page) <= 7
        paged += page
        cursor = page[-1].seq
    assert paged == log
    mine = psm.events.after(0, limit=100_000, pipeline=uuids[1])
    assert mine == [t for t in log if t.pipeline == uuids[1]] == psm.transitions(uuids[1])
    assert psm.events.after(log[-1].seq) == []


def test_refused_requests_publish_nothing(psm: Any) -> None:
    uuid = psm.create(make_pipeline(("Linear", [1, 1]))).uuid
    award_all(psm, uuid)
    c0, c1 = contexts(psm, uuid)
    last = psm.events.last_seq
    for _ in range(3):
        with pytest.raises(Conflict):
            psm.claim(c1["uuid"], ORCH)  # waits for c0
    with pytest.raises(Conflict):
        psm.create(make_pipeline().model_copy(update={"uuid": uuid}))
    assert psm.events.last_seq == last and psm.events.after(last) == []
    psm.claim(c0["uuid"], ORCH)
    new = psm.events.after(last)
    assert [t.seq for t in new] == list(range(last + 1, last + 1 + len(new)))
    assert new == logged(psm)[-len(new) :]


def test_a_subscriber_behind_the_ring_reads_the_store(psm: Any) -> None:
    hub = small_hub(psm, capacity=4)
    first = psm.create(make_pipeline(("Parallel", [1]))).uuid
    early = hub.after(0, limit=2)  # the ring holds only the last 4: from the store
    assert [t.seq for t in early] == [1, 2]
    stream = hub.stream(after=0)
    got = [next(stream) for _ in range(3)]
    some_runs(psm, 4)  # many more transitions than the ring holds
    drive(psm, first)
    log = logged(psm)
    assert len(log) > 40
    while len(got) < len(log):
        got.append(next(stream))
    assert got == log
    # Caught up: served from the ring, same records as the store has.
    assert hub.after(log[-3].seq) == log[-2:]
    assert hub.after(log[-5].seq, pipeline=first) == [t for t in log[-4:] if t.pipeline == first]


def test_stream_and_wait(psm: Any) -> None:
    stop = threading.Event()
    seen: list[Transition] = []

    def subscribe() -> None:
        for t in psm.events.stream(after=0, stop=stop):
            seen.append(t)

    thread = threading.Thread(target=subscribe)
    thread.start()
    try:
        last = psm.events.last_seq
        assert not psm.events.wait(last, 0.05)
        some_runs(psm, 2)
        assert psm.events.wait(last, 0.05)
        wait_for(lambda: len(seen) == len(logged(psm)))
        assert seen == logged(psm)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_wait_async(psm: Any) -> None:
    writer = threading.Thread(target=some_runs, args=(psm, 1))

    async def main() -> tuple[bool, bool]:
        last = psm.events.last_seq
        timed_out = await psm.events.wait_async(last, 0.05)
        asyncio.get_running_loop().call_later(0.05, writer.start)
        woke = await psm.events.wait_async(last, 10)
        return timed_out, woke

    try:
        assert asyncio.run(main()) == (False, True)
    finally:
        if writer.ident is not None:  # started: a failure above must not hide behind join()
            writer.join(timeout=30)


def test_a_restarted_hub_resumes_from_the_store(open_psm: Any) -> None:
    psm = open_psm()
    some_runs(psm, 2)
    log = logged(psm)
    psm.close()
    again = open_psm()
    assert again.events.last_seq == log[-1].seq
    assert again.events.after(0, limit=100_000) == log
    assert again.events.after(log[5].seq, limit=3) == log[6:9]
    uuid = again.create(make_pipeline()).uuid
    assert [t.seq for t in again.events.after(log[-1].seq)] == [
        log[-1].seq + 1,
        log[-1].seq + 2,
        log[-1].seq + 3,
    ]
    assert again.get(uuid)["state"] == "Complete"


def test_concurrent_writers_keep_the_log_gap_free(psm: Any) -> None:
    """16 threads drive 16 pipelines at once (with refused requests and idle lease sweeps in
    between); a subscriber on a small ring sees every transition once, in order."""
    hub = small_hub(psm, capacity=64)
    stop = threading.Event()
    seen: list[Transition] = []
    errors: list[BaseException] = []

    def subscribe() -> None:
        for t in hub.stream(after=0, stop=stop):
            seen.append(t)

    def run(i: int) -> None:
        try:
            rng = random.Random(i)
            modes = ["Linear", "Parallel", "Fanout"]
            model = make_pipeline(
                (modes[i % 3], [rng.randint(0, 2) for _ in range(3)]),
                (modes[(i + 1) % 3], [1, 1]),
            )
            uuid = psm.create(model, repo="r", sha=f"{i:040x}").uuid
            for c in contexts(psm, uuid, batch=0):
                with contextlib.suppress(Conflict):
                    psm.claim(c["uuid"], "nobody")
            codes = [0, 0, 0, 3, 1] if i % 4 == 0 else [0, 3]
            view = drive(psm, uuid, lambda step: rng.choice(codes), orchestrator=f"o{i}")
            assert view["state"] == "Complete"
            psm.expire_leases()
        except BaseException as exc:
            errors.append(exc)

    subscriber = threading.Thread(target=subscribe)
    subscriber.start()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert not errors, errors
        log = check_log(psm)
        assert len({t["pipeline"] for t in log}) == 16
        for uuid in {t["pipeline"] for t in log}:
            check_pipeline(psm, uuid)
        wait_for(lambda: len(seen) >= len(log))
        assert seen == logged(psm)  # each once, in order, nothing uncommitted
    finally:
        stop.set()
        subscriber.join(timeout=5)


def test_a_failing_commit_hook_does_not_stop_the_writer(psm: Any) -> None:
    hook = psm.store.on_commit

    def boom(published: list[Transition]) -> None:
        raise RuntimeError("boom")

    psm.store.on_commit = boom
    try:
        uuid = psm.create(make_pipeline(("Linear", [1]))).uuid  # committed: it returns
    finally:
        psm.store.on_commit = hook
    assert psm.get(uuid)["state"] == "Running"
    assert drive(psm, uuid)["status"] == "Success"  # and the writer still works
    check_log(psm)


def test_writes_after_close_are_refused(open_psm: Any) -> None:
    psm = open_psm()
    psm.close()
    with pytest.raises(RuntimeError, match="closed"):
        psm.create(make_pipeline())
