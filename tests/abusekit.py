"""Raw-socket clients that misbehave on purpose, for the limits tests and `bench/abuse.py`.

HTTP libraries are too polite for this: they send whole bodies, whole heads, and give up
on the first error. These speak HTTP/1.1 by hand on 127.0.0.1.
"""

from __future__ import annotations

import json
import select
import socket
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the client got out before the answer (or the close)
    closed: bool  # the server closed the connection after answering

    def json(self) -> Any:
        return json.loads(self.body)


def _parse(raw: bytes, sent: int, closed: bool) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/"):
        return Answer(0, {}, raw, sent, closed)
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    if length is not None:
        body = body[: int(length)]
    return Answer(status, headers, body, sent, closed)


def _read_answer(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Everything the server sends until it closes, or until a whole answer with a
    Content-Length is in and nothing more comes for a moment."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            part = sock.recv(65536)
        except TimeoutError:
            return data, False
        except ConnectionResetError:
            return data, True
        if not part:
            return data, True
        data += part
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:") and len(body) >= int(
                    line.split(b":")[1]
                ):
                    sock.settimeout(0.5)
    return data, False


def post_chunked(
    port: int,
    path: str,
    total: int,
    chunk: int = 64 * 1024,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> Answer:
    """POST `total` bytes of JSON whitespace as a chunked body, stopping as soon as the
    server answers or closes; the answer, and how much of the body went out."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Transfer-Encoding: chunked\r\n{extra}\r\n".encode()
    )
    piece = b"%x\r\n" % chunk + b" " * chunk + b"\r\n"
    sent = 0
    try:
        while sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # an answer (or the close) came before the whole body
            sock.sendall(piece)
            sent += chunk
        else:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        raw, closed = _read_answer(sock, timeout)
    finally:
        sock.close()
    return _parse(raw, sent, closed)


def request_head_only(port: int, method: str, path: str, headers: dict[str, str]) -> Answer:
    """Send a request head (e.g. with a large Content-Length) and no body: the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{lines}\r\n".encode())
    try:
        raw, closed = _read_answer(sock, 10)
    finally:
        sock.close()
    return _parse(raw, 0, closed)


def slow_header_sockets(port: int, count: int) -> list[socket.socket]:
    """`count` connections that each sent the start of a request head and no more."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode())
        socks.append(sock)
    return socks


def still_open(sock: socket.socket) -> bool:
    """Whether the server has not closed this connection (nothing to read, no EOF)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return True
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except OSError:
        return False


def rss_kb(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process in KiB, from /proc."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def reset_peak(pid: int) -> bool:
    """Reset the peak RSS (VmHWM) of a process, where the kernel allows it."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def timed_get(port: int, path: str = "/health") -> tuple[int, float]:
    """One GET on a new connection, as a health checker makes it: (status, milliseconds
    from connecting to the whole answer)."""
    started = time.perf_counter()
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        raw, _ = _read_answer(sock, 10)
    finally:
        sock.close()
    return _parse(raw, 0, True).status, (time.perf_counter() - started) * 1000
