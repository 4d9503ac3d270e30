"""The outbox's tables on SQLite and PostgreSQL: idempotent rows, the cursor, claiming
in lane order, retries and failures, the delivery log's filters and pages, replay."""

from __future__ import annotations

import time

import pytest

from otto.psm import PipelineStateMachine
from otto.webhooks.outbox import CLAIM_SECONDS, Entry, Outbox


def entry(seq: int, lane: str = "a", ordered: bool = False, **changes: object) -> Entry:
    fields: dict[str, object] = {
        "kind": "webhook",
        "event": "pipeline.Running",
        "project": "app",
        "pipeline": "p-1",
        "seq": seq,
        "url": f"http://127.0.0.1:9/{lane}",
        "lane": lane,
        "ordered": ordered,
        "auth_env": "HOOK_SECRET",
        "body": f'{{"seq": {seq}}}',
    }
    fields.update(changes)
    return Entry(**fields)  # type: ignore[arg-type]


def test_rows_are_keyed_by_what_they_tell_and_the_cursor_only_moves_on(
    psm: PipelineStateMachine,
) -> None:
    outbox = Outbox(psm.store, start=7)
    assert outbox.cursor() == 7
    assert Outbox(psm.store, start=99).cursor() == 7  # a restart keeps the cursor
    outbox.enqueue([entry(8), entry(9)], upto=9)
    outbox.enqueue([entry(8), entry(9), entry(10)], upto=10)  # again, after a "crash"
    assert outbox.cursor() == 10
    outbox.enqueue([], upto=5)  # a replica behind this one
    assert outbox.cursor() == 10
    rows, _ = outbox.list()
    assert sorted(r.seq for r in rows) == [8, 9, 10]
    assert entry(8).id == entry(8).id != entry(8, lane="b").id


def test_claims_follow_lane_order_and_are_exclusive(psm: PipelineStateMachine) -> None:
    outbox = Outbox(psm.store, start=0)
    outbox.enqueue(
        [entry(1, "s", True), entry(2, "s", True), entry(3, "w"), entry(4, "w"), entry(5, "x")],
        upto=5,
    )
    now = time.time() + 1
    claimed = outbox.claim(now, busy={"x"})
    assert [(d.lane, d.seq) for d in claimed] == [("s", 1), ("w", 3), ("w", 4)]
    assert [d.seq for d in outbox.claim(now, busy=set())] == [5]
    assert outbox.claim(now, busy=set()) == []  # all taken
    # The ordered lane's next row waits until the first one is settled.
    outbox.finish(claimed[0].id, 1, 503, "HTTP 503", now + 60, delivered=False)
    assert outbox.claim(now + 30, busy=set()) == []
    assert [d.seq for d in outbox.claim(now + 61, busy=set())] == [1]
    outbox.finish(claimed[0].id, 2, 201, None, None, delivered=True)
    assert [d.seq for d in outbox.claim(now + 61, busy=set())] == [2]
    # A claim lapses: a sender that died leaves its rows due again.
    later = now + CLAIM_SECONDS + 1
    assert sorted(d.seq for d in outbox.claim(later, busy=set())) == [3, 4, 5]
    outbox.release([entry(3, "w").id], at=later)
    assert [d.seq for d in outbox.claim(later, busy=set())] == [3]


def test_attempts_end_delivered_or_failed(psm: PipelineStateMachine) -> None:
    outbox = Outbox(psm.store, start=0)
    outbox.enqueue([entry(1), entry(2)], upto=2)
    one, two = entry(1).id, entry(2).id
    outbox.finish(one, 1, None, "connection refused", time.time() + 5, delivered=False)
    outbox.finish(two, 3, 410, "HTTP 410: gone", None, delivered=False)
    first, second = outbox.get(one), outbox.get(two)
    assert first is not None and second is not None
    assert (first.state, first.attempts, first.last_error) == ("pending", 1, "connection refused")
    assert (second.state, second.attempts, second.last_code) == ("failed", 3, 410)
    outbox.finish(one, 2, 204, None, None, delivered=True)
    done = outbox.get(one)
    assert done is not None and (done.state, done.last_error) == ("delivered", None)
    assert outbox.prune(before=time.time() - 60) == 0
    assert outbox.prune(before=time.time() + 1) == 1  # only delivered rows are forgotten
    assert outbox.get(one) is None and outbox.get(two) is not None


def test_the_log_is_newest_first_filtered_and_paged(psm: PipelineStateMachine) -> None:
    outbox = Outbox(psm.store, start=0)
    for seq in range(1, 8):
        outbox.enqueue([entry(seq, pipeline=f"p-{seq % 2}")], upto=seq)
    page, cursor = outbox.list(limit=3)
    assert [d.seq for d in page] == [7, 6, 5] and cursor is not None
    rest, end = outbox.list(limit=10, cursor=cursor)
    assert [d.seq for d in rest] == [4, 3, 2, 1] and end is None
    odd, _ = outbox.list(pipeline="p-1", kind="webhook", state="pending")
    assert [d.seq for d in odd] == [7, 5, 3, 1]
    assert outbox.list(project="other")[0] == []
    with pytest.raises(ValueError, match="cursor"):
        outbox.list(cursor="garbage")


def test_a_replay_is_a_new_pending_row_with_the_same_request(psm: PipelineStateMachine) -> None:
    outbox = Outbox(psm.store, start=0)
    outbox.enqueue([entry(1)], upto=1)
    original = entry(1).id
    outbox.finish(original, 8, 500, "HTTP 500", None, delivered=False)
    copy = outbox.replay(original)
    assert copy is not None and copy.id != original
    assert (copy.state, copy.attempts, copy.replay_of) == ("pending", 0, original)
    assert (copy.url, copy.body, copy.auth_env) == (entry(1).url, entry(1).body, "HOOK_SECRET")
    assert outbox.get(copy.id) == copy
    assert outbox.get(original).state == "failed"  # type: ignore[union-attr]
    assert outbox.replay("no-such-delivery") is None
