"""`OttoClient` against a real `otto server`: calls, errors, and the resuming event stream."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest
from clientkit import wait_complete

from otto.client import ClientError, NotPermitted, OttoClient, ServerUnavailable
from otto.client.errors import EX_DATAERR, EX_UNAVAILABLE, EX_USAGE, UsageProblem
from otto.sse import SseParser
from serverkit import Server, free_port, start_server, stop_server

ECHO = "pipeline { stage { name = 'One' steps { sh 'echo one' } } }"


def test_create_get_list_and_transitions(client: OttoClient) -> None:
    created = client.create(ottofile=ECHO, repo="api/list", ref="main")
    assert not created.duplicate
    document = wait_complete(client, created.uuid)
    assert document["status"] == "Success"
    page = client.pipelines(repo="api/list")
    assert [p["uuid"] for p in page.pipelines] == [created.uuid]
    assert page.next_cursor is None
    transitions = client.transitions(created.uuid)
    assert transitions[0]["to"] == "Pending" and transitions[-1]["to"] == "Complete"
    assert client.resolve(created.uuid[:8]) == created.uuid
    assert client.resolve(created.uuid.upper()) == created.uuid


def test_errors_carry_the_servers_message(client: OttoClient) -> None:
    with pytest.raises(ClientError) as missing:
        client.pipeline("00000000-0000-4000-8000-000000000000")
    assert missing.value.status == 404 and "no pipeline" in missing.value.message
    assert missing.value.exit_code == EX_DATAERR
    uuid = client.create(ottofile=ECHO).uuid
    wait_complete(client, uuid)
    with pytest.raises(ClientError, match="already Complete") as complete:
        client.abort(uuid)
    assert complete.value.status == 409
    with pytest.raises(ClientError) as invalid:
        client.create(ottofile="pipeline {")
    assert invalid.value.code == "invalid_ottofile"


def test_a_server_that_is_down_is_unavailable(tmp_path: Path) -> None:
    down = OttoClient(f"http://127.0.0.1:{free_port()}")
    with down, pytest.raises(ServerUnavailable, match="cannot reach") as err:
        down.pipelines()
    assert err.value.exit_code == EX_UNAVAILABLE
    with pytest.raises(UsageProblem, match="a URL needs its scheme") as bad:
        OttoClient("127.0.0.1:7670")
    assert bad.value.exit_code == EX_USAGE
    with pytest.raises(UsageProblem, match="not a server URL"):
        OttoClient("ftp://127.0.0.1:7670")


def test_a_token_is_sent_as_bearer(server: Server) -> None:
    # The objects API of this server needs no token; a wrong scheme is still refused
    # clearly rather than with a traceback, whatever the server's policy is.
    with OttoClient(server.url, token="secret") as with_token:
        assert with_token.http.headers["Authorization"] == "Bearer secret"
        try:
            with_token.pipelines(limit=1)
        except NotPermitted as exc:  # a server configured with another token
            assert exc.exit_code == 77


def test_prefix_that_names_several_runs_is_refused(client: OttoClient) -> None:
    # 17 runs: by the pigeonhole principle two share their first hex digit.
    uuids = [client.create(ottofile=ECHO, repo="api/prefix").uuid for _ in range(17)]
    firsts = [u[0] for u in uuids]
    shared = next(c for c in firsts if firsts.count(c) > 1)
    with pytest.raises(ClientError, match="more than one pipeline"):
        client.resolve(shared)
    with pytest.raises(ClientError, match="not a pipeline uuid"):
        client.resolve("xyz")
    for uuid in uuids:
        wait_complete(client, uuid)


def test_sse_parser() -> None:
    parser = SseParser()
    lines = ["retry: 1000", "", ": keep-alive", "id: 7", "event: transition", "data: {", "data: }"]
    assert [parser.feed(line) for line in lines] == [None] * len(lines)
    assert parser.retry == 1.0
    event = parser.feed("")
    assert event is not None and (event.id, event.event, event.data) == ("7", "transition", "{\n}")
    assert parser.feed("data:x") is None
    assert parser.feed("") == type(event)("7", "message", "x")  # the id carries over


def test_event_stream_resumes_across_a_server_restart(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    server = start_server(home, port)
    seen: list[int] = []
    try:
        with OttoClient(server.url) as c:
            first = c.create(ottofile=ECHO).uuid
            stream = c.stream_events(after=0, give_up_after=30)
            events = iter(stream)
            for event in events:
                seen.append(event["seq"])
                if event["entity"] == "pipeline" and event["to"] == "Complete":
                    break
            stop_server(server, signal.SIGKILL)  # the connection drops mid-stream
            restarted: list[Server] = []

            def restart() -> None:
                restarted.append(start_server(home, port))
                with OttoClient(f"http://127.0.0.1:{port}") as again:
                    again.create(ottofile=ECHO)

            threading.Thread(target=restart, daemon=True).start()
            second = None
            for event in events:  # the same iteration: it reconnects by itself
                seen.append(event["seq"])
                if event["pipeline"] != first:
                    second = event["pipeline"]
                if event["pipeline"] == second and event["to"] == "Complete":
                    break
            server = restarted[0]
            assert stream.reconnects >= 1
            everything = [e["seq"] for e in c.all_events()]
    finally:
        stop_server(server)
    assert seen == list(range(1, len(seen) + 1))  # in order, none missed, none twice
    assert seen == everything[: len(seen)]
