"""Bounded memory, descriptors and time on every input (README, "Limits"), against a real
`otto server` process on 127.0.0.1, by raw sockets where an HTTP library is too polite."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from abusekit import (
    post_chunked,
    request_head_only,
    rss_kb,
    slow_header_sockets,
    still_open,
)
from serverkit import Server, free_port, running_server, stop_server, wait_for

MB = 1024 * 1024
ONE_STEP = "pipeline { stage { name = 'one' steps { sh 'true' } } }"


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])


def test_a_declared_length_over_the_limit_is_413_before_any_body(server: Server) -> None:
    headers = {"Content-Length": str(6 * MB), "Content-Type": "application/json"}
    answer = request_head_only(port_of(server), "POST", "/v1/pipelines", headers)
    assert answer.status == 413
    assert answer.json()["error"]["code"] == "too_large"
    assert answer.headers["connection"] == "close" and answer.closed


def test_a_chunked_body_is_cut_off_at_the_limit_and_no_more_is_read(server: Server) -> None:
    answer = post_chunked(port_of(server), "/v1/pipelines", 200 * MB)
    assert answer.status == 413, answer.body[:200]
    assert answer.json()["error"] == {
        "code": "too_large",
        "message": f"request body over {5 * MB} bytes",
        "limit": 5 * MB,
    }
    assert answer.closed
    # What got out: the 5 MB limit and what socket buffers took, never the 200 MB.
    assert answer.sent < 40 * MB


def test_four_huge_chunked_bodies_keep_server_memory_bounded(server: Server) -> None:
    """Before: every body was read whole before the 25 MB check (RSS 64 MB → 1.8 GB)."""
    pid = server.process.pid
    idle, _ = rss_kb(pid)
    answers: list[int] = []

    def send() -> None:
        answers.append(post_chunked(port_of(server), "/v1/pipelines", 100 * MB).status)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _, peak = rss_kb(pid)
    assert answers == [413] * 4
    assert (peak - idle) / 1024 < 100, f"peak RSS grew by {(peak - idle) / 1024:.0f} MB"


@pytest.mark.parametrize(
    ("path", "size", "limit"),
    [
        ("/v1/contexts/nope/claim", 2 * MB, MB),  # executor calls: 1 MB
        ("/v1/parse", 6 * MB, 5 * MB),  # Ottofiles: 5 MB
        ("/v1/webhooks/github", 26 * MB, 25 * MB),  # forges: 25 MB
    ],
)
def test_each_endpoint_has_its_own_limit(server: Server, path: str, size: int, limit: int) -> None:
    over = post_chunked(port_of(server), path, size)
    assert over.status == 413 and over.json()["error"]["limit"] == limit
    under = post_chunked(port_of(server), path, limit - 64 * 1024)
    assert under.status not in (413, 0), under.body[:200]


def test_an_object_may_be_larger_than_a_json_body(server: Server) -> None:
    with server.client() as c:
        data = os.urandom(3 * MB)
        stored = c.put("/v1/objects/big/blob.bin", content=data)
        assert stored.status_code == 200, stored.text
        assert c.get("/v1/objects/big/blob.bin").content == data


def test_deep_json_is_a_json_400(server: Server) -> None:
    with server.client() as c:
        deep = b"[" * 100_000 + b"]" * 100_000
        answer = c.post("/v1/pipelines", content=deep, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "too_deep"
        body = '{"model": ' + '{"x": ' * 990 + "{}" + "}" * 990 + "}"  # parses; 991 deep
        answer = c.post("/v1/pipelines", content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "too_deep"
        hook = c.post(
            "/v1/webhooks/github",
            content=deep,
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": "sha256=00"},
        )
        assert hook.status_code in (400, 401)  # never a 500
        assert c.get("/health").json() == {"status": "ok"}


def test_names_are_bounded_and_a_message_is_cut(server: Server) -> None:
    with server.client() as c:
        for field in ("ref", "project", "trigger"):
            answer = c.post("/v1/pipelines", json={"ottofile": ONE_STEP, field: "x" * 256})
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"]["field"] == field
            fine = c.post("/v1/pipelines", json={"ottofile": ONE_STEP, field: "x" * 255})
            assert fine.status_code == 201, fine.text
        for bad in ("refs/heads/\x1b]0;pwned\x07", "refs/heads/a\nb", "refs/heads/\x7f"):
            answer = c.post("/v1/pipelines", json={"ottofile": ONE_STEP, "ref": bad})
            assert answer.status_code == 400 and answer.json()["error"]["field"] == "ref"

        long = "é" * (1024 * 1024)  # 2 MB of UTF-8
        uuid = c.post("/v1/pipelines", json={"ottofile": ONE_STEP, "message": long}).json()["uuid"]
        kept = c.get(f"/v1/pipelines/{uuid}").json()["message"]
        assert len(kept.encode()) <= 4096
        assert kept.endswith("… [truncated]") and kept.startswith("éé")
        listed = c.get("/v1/pipelines", params={"limit": 5})
        assert len(listed.content) < 64 * 1024
        short = c.post("/v1/pipelines", json={"ottofile": ONE_STEP, "message": "fix: x"})
        assert c.get(f"/v1/pipelines/{short.json()['uuid']}").json()["message"] == "fix: x"


def test_a_pipeline_of_nothing_is_refused(server: Server) -> None:
    with server.client() as c:
        for body in ({"model": {}}, {"model": {"batches": []}}, {"ottofile": "pipeline {}"}):
            answer = c.post("/v1/pipelines", json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.json()["error"]["code"] == "empty_pipeline"
        assert c.get("/v1/pipelines").json()["pipelines"] == []


def test_sse_without_a_position_starts_at_the_present(server: Server) -> None:
    with server.client() as c:
        for _ in range(3):
            c.post("/v1/pipelines", json={"ottofile": ONE_STEP}).raise_for_status()
        last = c.get("/v1/events", params={"after": 0}).json()["events"][-1]["seq"]

        connected = threading.Event()

        def first_event(params: dict[str, int]) -> int:
            with c.stream(
                "GET", "/v1/events", params=params, headers={"Accept": "text/event-stream"}
            ) as r:
                connected.set()  # the server answered: its cursor is fixed
                for line in r.iter_lines():
                    if line.startswith("id: "):
                        return int(line[4:])
                    if line.startswith(": keep-alive"):
                        break
            raise AssertionError("no event")

        got: list[int] = []
        reader = threading.Thread(target=lambda: got.append(first_event({})))
        reader.start()
        assert connected.wait(30)  # nothing of the past comes
        c.post("/v1/pipelines", json={"ottofile": ONE_STEP}).raise_for_status()
        reader.join(30)
        assert not reader.is_alive()
        assert got == [last + 1]
        assert first_event({"after": 0}) == 1  # history, when asked for


# -- connections ---------------------------------------------------------------------


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Server]:
    """A server that gives a request head 1 s, a pause in a body 1 s, and holds at most 40
    connections."""
    env = {"OTTO_LOCAL_ORCHESTRATOR": "0", "OTTO_HEADER_TIMEOUT": "1", "OTTO_BODY_TIMEOUT": "1"}
    with running_server(tmp_path / "home", **env, OTTO_MAX_CONNECTIONS="40") as srv:
        yield srv


def test_a_slow_request_head_is_cut_off(guarded: Server) -> None:
    """Before: uvicorn has no header timeout; 200 slow-header sockets were held 30 s."""
    socks = slow_header_sockets(port_of(guarded), 20)
    trickler = socks[0]
    started = time.monotonic()
    try:
        while still_open(trickler) and time.monotonic() - started < 10:
            trickler.sendall(b"a")  # a byte at a time keeps no connection alive
            time.sleep(0.1)
        assert time.monotonic() - started < 6
        wait_for(lambda: not any(still_open(s) for s in socks), 5, "slow sockets closed")
    finally:
        for s in socks:
            s.close()


def test_a_body_that_stalls_is_cut_off(guarded: Server) -> None:
    port = port_of(guarded)
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(
            f"POST /v1/pipelines HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode()
        )
        started = time.monotonic()
        answer = b""
        while part := sock.recv(65536):  # until the server closes the connection
            answer += part
        assert time.monotonic() - started < 5
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b'"code": "body_timeout"' in answer and b"connection: close" in answer.lower()


def test_connections_over_the_limit_evict_slow_heads_not_requests(tmp_path: Path) -> None:
    # No head timeout in the test's time: only evictions close the slow heads.
    env = {"OTTO_LOCAL_ORCHESTRATOR": "0", "OTTO_HEADER_TIMEOUT": "120"}
    with running_server(tmp_path / "home", **env, OTTO_MAX_CONNECTIONS="40") as srv:
        socks = slow_header_sockets(port_of(srv), 120)
        try:
            with httpx.Client(base_url=srv.url, timeout=30) as c:
                for _ in range(10):
                    assert c.get("/health").status_code == 200
            wait_for(lambda: sum(still_open(s) for s in socks) <= 40, 30, "evictions")
        finally:
            for s in socks:
                s.close()


def _server_with_nofile(home: Path, soft: int, hard: int) -> tuple[Server, Path]:
    """`otto server` started with the descriptor limits (soft, hard)."""
    home.mkdir(parents=True)
    port = free_port()
    log_path = home.parent / f"server-{port}.log"
    args = [sys.executable, "-m", "otto.cli", "server", "--port", str(port), "--home", str(home)]

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            args,
            env={**os.environ, "OTTO_LOCAL_ORCHESTRATOR": "0", "OTTO_HEADER_TIMEOUT": "30"},
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,
        )
    server = Server(f"http://127.0.0.1:{port}", process, home)

    def up() -> bool:
        try:
            return httpx.get(f"{server.url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, 20, "the server")
    return server, log_path


def _soft_nofile(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no descriptor limit")


def test_the_soft_descriptor_limit_is_raised_at_start(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 1024:
        pytest.skip(f"the hard descriptor limit ({hard}) leaves nothing to raise to")
    server, _ = _server_with_nofile(tmp_path / "home", 512, hard)
    try:
        assert _soft_nofile(server.process.pid) == min(hard, 1 << 20)
    finally:
        stop_server(server)


def test_more_sockets_than_descriptors_never_take_the_server_down(tmp_path: Path) -> None:
    """Before: 1,100 slow-header sockets against 1,024 descriptors: no health check answered,
    hundreds of thousands of `Too many open files` tracebacks."""
    server, log_path = _server_with_nofile(tmp_path / "home", 256, 256)
    socks = []
    try:
        for _ in range(400):
            try:
                socks += slow_header_sockets(port_of(server), 1)
            except OSError:
                break
        with httpx.Client(base_url=server.url, timeout=5) as c:
            for _ in range(10):
                assert c.get("/health").status_code == 200
                assert c.post("/v1/pipelines", json={"ottofile": ONE_STEP}).status_code == 201
    finally:
        for s in socks:
            s.close()
        stop_server(server)
    assert "Too many open files" not in log_path.read_text(errors="replace")
