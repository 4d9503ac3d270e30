"""A create whose answer is lost is sent again with the same Idempotency-Key, and the
server makes one run of it: `otto run --server` through a proxy that
cuts the first answer off, as a server crash between its commit and its 201 would."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

from clientkit import otto

from otto.client import OttoClient
from serverkit import Server

ONE_STEP = "pipeline { stage { name = 'one' steps { sh 'echo idempotent' } } }"


class AnswerLosingProxy:
    """Forwards connections to a server; the first `lose` requests reach it, but their
    answers never come back (the connection is cut once the server has answered)."""

    def __init__(self, upstream: str, lose: int = 1) -> None:
        self.upstream = int(upstream.rsplit(":", 1)[1])
        self.lose = lose
        self.keys: list[str] = []  # the Idempotency-Key of every create seen
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        server = socket.create_connection(("127.0.0.1", self.upstream))
        request = _read_request(client)
        head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        if head.startswith("POST /v1/pipelines "):
            for line in head.split("\r\n"):
                if line.lower().startswith("idempotency-key:"):
                    self.keys.append(line.split(":", 1)[1].strip())
            if self.lose > 0:
                self.lose -= 1
                server.sendall(request)
                server.recv(1)  # the server answered: the run exists; the client never hears
                client.close()
                server.close()
                return
        server.sendall(request)
        threading.Thread(target=_pipe, args=(client, server), daemon=True).start()
        _pipe(server, client)


def _read_request(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            return data
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(body) < length:
        part = sock.recv(65536)
        if not part:
            break
        body += part
    return head + b"\r\n\r\n" + body


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while part := source.recv(65536):
            sink.sendall(part)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _count(client: OttoClient) -> int:
    return len(client.pipelines(limit=1000).pipelines)


def test_otto_run_sends_a_key_and_a_lost_answer_makes_one_run(
    server: Server, client: OttoClient, tmp_path: Path
) -> None:
    ottofile = tmp_path / "Ottofile"
    ottofile.write_text(ONE_STEP)
    before = _count(client)
    proxy = AnswerLosingProxy(server.url, lose=1)
    try:
        done = otto("run", str(ottofile), "--server", proxy.url)
    finally:
        proxy.close()
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(proxy.keys) == 2 and proxy.keys[0] == proxy.keys[1] and proxy.keys[0]
    assert _count(client) == before + 1  # the retry made no second run


def test_the_client_retries_with_the_same_key(server: Server, client: OttoClient) -> None:
    before = _count(client)
    proxy = AnswerLosingProxy(server.url, lose=2)
    try:
        with OttoClient(proxy.url) as lossy:
            created = lossy.create(ottofile=ONE_STEP, idempotency_key="client-test-key")
    finally:
        proxy.close()
    assert proxy.keys == ["client-test-key"] * 3
    assert _count(client) == before + 1
    assert client.pipeline(created.uuid)["uuid"] == created.uuid
