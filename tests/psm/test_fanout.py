"""The fan-out thread that serves event streams: filters, and a subscriber that falls
behind told to resync, then resuming from the log without a gap or a repeat. Real
sockets, a real store; the HTTP side is in tests/server/test_event_streams.py."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from psmkit import all_transitions, drive, make_pipeline, wait_for

from otto.client.sse import EventStream
from otto.psm import Transition
from otto.psm.events import EventFilter
from otto.psm.fanout import FanOut


@contextmanager
def fanout_of(psm: Any, **options: Any) -> Iterator[FanOut]:
    fanout = FanOut(psm.events, **options)
    fanout.start()
    try:
        yield fanout
    finally:
        fanout.stop()


def logged(psm: Any) -> list[Transition]:
    return [Transition.from_row(r) for r in all_transitions(psm)]


def runs(psm: Any, n: int) -> list[str]:
    uuids = []
    for i in range(n):
        uuid = psm.create(make_pipeline(("Fanout", [1, 1]), ("Linear", [1]))).uuid
        drive(psm, uuid, lambda step, i=i: 1 if i % 3 == 1 else 0)
        uuids.append(uuid)
    return uuids


def parse(raw: bytes) -> list[tuple[str, str | None, str]]:
    """(event, id, data) of each whole event in `raw`; comments and `retry` skipped."""
    events = []
    body = raw.split(b"\r\n\r\n", 1)[1] if raw.startswith(b"HTTP/") else raw
    for block in body.decode().split("\n\n")[:-1]:
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(": ")
            fields[name] = value
        if "data" in fields:
            events.append((fields.get("event", "message"), fields.get("id"), fields["data"]))
    return events


def seqs(raw: bytes) -> list[int]:
    return [json.loads(d)["seq"] for e, _, d in parse(raw) if e == "transition"]


def read_until(sock: socket.socket, done: Any, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    got = b""
    while not done(got):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def test_each_filter_gets_exactly_its_events_in_order(psm: Any) -> None:
    before = runs(psm, 1)
    filters = {
        "all": EventFilter(),
        "pipelines": EventFilter.of(None, ["pipeline"]),
        "batches and steps": EventFilter.of(None, ["batch", "step"]),
        "one run": EventFilter.of(before[0], None),  # created before: caught up from the ring
        "one run's contexts": EventFilter.of(before[0], ["context"]),
    }
    with fanout_of(psm) as fanout:
        clients = {}
        for name, only in filters.items():
            mine, theirs = socket.socketpair()
            fanout.attach(theirs, only, after=0)
            clients[name] = mine
        later = runs(psm, 4)
        psm.retry(
            before[0], actor="test", every=True
        )  # the first run again: live, filtered by pipeline
        drive(psm, before[0])
        log = logged(psm)
        assert {t.pipeline for t in log} == {*before, *later}
        for name, only in filters.items():
            want = [t.seq for t in log if only.matches(t)]
            got = read_until(clients[name], lambda raw, w=want: seqs(raw)[-1:] == w[-1:])
            assert seqs(got) == want, name
            assert [json.loads(d) for e, _, d in parse(got) if e == "transition"] == [
                t.to_dict() for t in log if only.matches(t)
            ]
            clients[name].close()


def test_a_subscriber_that_stops_reading_is_resynced_and_resumes_from_the_log(psm: Any) -> None:
    with fanout_of(psm, backlog=4096) as fanout:
        slow, theirs = socket.socketpair()
        for end in (slow, theirs):  # small kernel buffers: falling behind takes little
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        start = psm.events.last_seq
        fanout.attach(theirs, EventFilter(), after=start)
        wait_for(lambda: fanout.subscribers() == 1)
        runs(psm, 3)
        wait_for(lambda: fanout.subscribers() == 0)  # dropped, not queued for
        runs(psm, 2)  # more, after it was dropped
        first = read_until(slow, lambda raw: False)  # up to the end of its stream
        resyncs = [(i, d) for e, i, d in parse(first) if e == "resync"]
        assert len(resyncs) == 1 and parse(first)[-1][0] == "resync"
        resume_id, data = resyncs[0]
        after = json.loads(data)["after"]
        assert resume_id == str(after)
        received = seqs(first)
        assert received == list(range(start + 1, after + 1))  # everything up to where it resumes

        again, theirs = socket.socketpair()
        fanout.attach(theirs, EventFilter(), after=after)  # as with Last-Event-ID
        last = psm.events.last_seq
        received += seqs(read_until(again, lambda raw: seqs(raw)[-1:] == [last]))
        assert received == [t.seq for t in logged(psm) if t.seq > start]


def test_the_cli_stream_follows_a_resync_without_a_gap_or_a_repeat(psm: Any) -> None:
    """`otto events --follow`'s client, reading slowly from a small backlog."""
    with fanout_of(psm, backlog=2048) as fanout, front_door(fanout) as url:
        start = psm.events.last_seq
        small = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
        stream = EventStream(httpx.Client(base_url=url, transport=small), after=start)
        events = iter(stream)
        producer = threading.Thread(target=runs, args=(psm, 10))
        producer.start()
        got = [next(events)["seq"]]
        producer.join()  # it read one event while all these were committed
        last = psm.events.last_seq
        while got[-1] < last:
            got.append(next(events)["seq"])
        assert stream.resyncs >= 1
        assert got == list(range(start + 1, last + 1))


@contextmanager
def front_door(fanout: FanOut) -> Iterator[str]:
    """An HTTP listener that hands each request's connection to `fanout` as
    `GET /v1/events` does (resuming after its Last-Event-ID), with small kernel buffers."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            head = read_until(conn, lambda raw: b"\r\n\r\n" in raw)
            lines = head.decode().split("\r\n")
            last = [
                v for k, _, v in (h.partition(": ") for h in lines) if k.lower() == "last-event-id"
            ]
            conn.setblocking(False)
            fanout.attach(conn, EventFilter(), after=int(last[0]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() waiting in `serve`
        listener.close()
        thread.join(timeout=5)
