"""`GET /v1/events` under many subscribers: filters by query, the API answered while
hundreds of streams are open and fed, the dashboard's list page asking for pipeline
events only."""

from __future__ import annotations

import json
import selectors
import socket
import time
import uuid as uuidlib
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from serverkit import Server, running_server, wait_for

ONE_STEP = "pipeline { steps { sh 'true' } }"


def subscribe(server: Server, query: str = "", after: int | None = None) -> socket.socket:
    """A raw SSE subscriber (hundreds of them cost the test little)."""
    address = urlsplit(server.url)
    sock = socket.create_connection((address.hostname, address.port))
    resume = "" if after is None else f"Last-Event-ID: {after}\r\n"
    sock.sendall(
        f"GET /v1/events{query} HTTP/1.1\r\nHost: {address.netloc}\r\n"
        f"Accept: text/event-stream\r\n{resume}\r\n".encode()
    )
    return sock


def transitions(raw: bytes) -> list[dict[str, object]]:
    return [json.loads(line[6:]) for line in raw.split(b"\n") if line.startswith(b"data: {")]


def read_all(
    socks: list[socket.socket], done: dict[socket.socket, int]
) -> dict[socket.socket, bytes]:
    """Read every socket until it has `done[sock]` transitions (or 20 s pass)."""
    got = {s: b"" for s in socks}
    with selectors.DefaultSelector() as selector:
        for s in socks:
            s.setblocking(False)
            selector.register(s, selectors.EVENT_READ)
        waiting = {s for s in socks if done[s]}
        deadline = time.monotonic() + 20
        while waiting and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                chunk = s.recv(65536)
                got[s] += chunk
                if not chunk or len(transitions(got[s])) >= done[s]:
                    selector.unregister(s)
                    waiting.discard(s)
    return got


def test_filters_select_the_events_by_query(server: Server) -> None:
    with server.client() as c:
        first = c.post("/v1/pipelines", json={"ottofile": ONE_STEP}).json()["uuid"]
        queries = {
            "": lambda e: True,
            "?entity=pipeline": lambda e: e["entity"] == "pipeline",
            "?entity=batch,context": lambda e: e["entity"] in ("batch", "context"),
            f"?pipeline={first}": lambda e: e["pipeline"] == first,
            f"?pipeline={first}&entity=context": lambda e: (
                e["pipeline"] == first and e["entity"] == "context"
            ),
        }
        socks = {q: subscribe(server, q, after=0) for q in queries}
        second = c.post("/v1/pipelines", json={"ottofile": ONE_STEP}).json()["uuid"]
        for uuid in (first, second):
            assert c.post(f"/v1/pipelines/{uuid}/abort").status_code < 300
        log = c.get("/v1/events", params={"after": 0}).json()["events"]
        assert {e["entity"] for e in log} >= {"pipeline", "batch", "context"}
        want = {socks[q]: [e for e in log if match(e)] for q, match in queries.items()}
        got = read_all(list(socks.values()), {s: len(w) for s, w in want.items()})
        for query, sock in socks.items():
            assert transitions(got[sock]) == want[sock], query
            sock.close()
        for query, match in queries.items():  # the JSON reads filter alike
            params = {"after": "0", **dict(p.split("=") for p in query[1:].split("&") if p)}
            found = c.get("/v1/events", params=params).json()["events"]
            assert found == [e for e in log if match(e)], query
        bad = c.get("/v1/events", params={"entity": "pipeline,nonsense"})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "entity"


def test_the_api_answers_while_hundreds_of_streams_are_fed(server: Server) -> None:
    with server.client() as c:
        start = c.get("/v1/events", params={"after": 0}).json()["events"]
        after = start[-1]["seq"] if start else 0
        # As dashboards would be: a tenth unfiltered, most on the runs list, some on a run
        # that does not exist (nothing matches: they get keep-alives only).
        queries = ["" if i % 10 == 0 else "?entity=pipeline" for i in range(180)]
        queries += [f"?pipeline={uuidlib.uuid4()}" for _ in range(20)]
        socks = [subscribe(server, q, after=after) for q in queries]
        created = []
        for _ in range(15):
            created.append(c.post("/v1/pipelines", json={"ottofile": ONE_STEP}).json()["uuid"])
            listed = c.get("/v1/pipelines", params={"limit": 100}).json()["pipelines"]
            assert [p["uuid"] for p in listed][: len(created)] == created[::-1]
        log = c.get("/v1/events", params={"after": after}).json()["events"]
        expect = {
            s: len(log) if q == "" else 0 if "pipeline=" in q else 2 * len(created)
            for s, q in zip(socks, queries, strict=True)
        }
        got = read_all(socks, expect)
        for sock, query in zip(socks, queries, strict=True):
            head = got[sock].partition(b"\r\n\r\n")[0].lower()
            # Written by the fan-out thread, not by uvicorn (which would chunk it).
            assert b"connection: close" in head and b"transfer-encoding" not in head
            events = transitions(got[sock])
            assert [e["seq"] for e in events] == [
                e["seq"]
                for e in log
                if query == "" or (query == "?entity=pipeline" and e["entity"] == "pipeline")
            ]
            sock.close()


def test_the_runs_list_follows_pipeline_events_only(server: Server) -> None:
    with server.client() as c:
        page = c.get("/").text
        assert 'data-events="/v1/events?entity=pipeline"' in page
        assert 'data-events="/v1/events?entity=batch"' in c.get("/auctions").text


def test_streams_count_against_the_connection_limit(tmp_path: Path) -> None:
    """Served off the API's loop, a stream still holds one of `max_connections`: past
    the limit a new connection is refused (503) rather than a descriptor run out."""
    env = {"OTTO_LOCAL_ORCHESTRATOR": "0", "OTTO_MAX_CONNECTIONS": "40"}
    with running_server(tmp_path / "home", **env) as server:
        socks = [admitted(server) for _ in range(40)]  # each answered, so each handed over
        refused = httpx.get(f"{server.url}/health", timeout=5)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "too_many_connections"
        for sock in socks[:5]:
            sock.close()
        wait_for(lambda: httpx.get(f"{server.url}/health", timeout=5).status_code == 200, 10)
        for sock in socks[5:]:
            sock.close()


def admitted(server: Server) -> socket.socket:
    """A stream the server answered 200. A connection of the server's start-up checks
    may hold a slot for a moment after it closed: meanwhile a stream is refused (503),
    or evicted before its head was read (reset)."""
    for _ in range(50):
        sock = subscribe(server)
        try:
            head = read_until_head(sock)
        except ConnectionResetError:
            head = b"reset"
        if head.startswith(b"HTTP/1.1 200 "):
            return sock
        sock.close()
        assert head.startswith((b"HTTP/1.1 503 ", b"reset")), head
        time.sleep(0.1)
    raise AssertionError("a stream was refused for 5 s though within the limit")


def read_until_head(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got
