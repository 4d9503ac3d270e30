"""Bounded memory, descriptors and time on every input (README, "Limits").

A server reachable from a browser or a network must not let one client make it
read without end, hold descriptors without end, or recurse without end. The
limits, and why each one is where it is:

- Request bodies are counted while they stream (`BodyLimit`): a `Content-Length`
  over the endpoint's limit is answered 413 before a byte of the body is read;
  a chunked body is counted as it arrives and answered 413 at the limit, with
  `Connection: close`, so nothing more of it is read. The limit is per endpoint
  (`body_limit`): forge webhooks 25 MB, pipelines and the parser 5 MB, objects
  whatever the object store is configured to hold, any other request 1 MB. A body
  that pauses longer than `body_timeout` seconds is answered 408 the same way.
- JSON documents may nest at most `MAX_JSON_DEPTH` deep (`load_json`): a deeper
  one is a JSON 400, never a RecursionError deep in a parser or a validator.
- `ref`, `project` and `trigger` are at most `MAX_NAME` characters and a ref has
  no control characters (they are names, shown on every page and in every
  terminal); a commit `message` keeps its first `MAX_MESSAGE_BYTES` bytes and ends
  with `TRUNCATED` when cut (`bounded_message`).
- Connections: `GuardedH11Protocol` closes a connection that has not sent a whole
  request head within `header_timeout` seconds (uvicorn has no header timeout of
  its own: only a keep-alive timeout once a response is done), and keeps the
  number of open connections at `max_connections`, below the descriptor limit
  (`raise_nofile` lifts the soft limit to the hard one at start): at the limit a
  new connection evicts the one that has waited longest for its request head, or,
  when every one is busy with a request, is answered 503 and closed. Either way a
  descriptor is never what runs out, so `accept()` never fails.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import socket
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

MB = 1024 * 1024
WEBHOOK_BODY = 25 * MB
PIPELINE_BODY = 5 * MB
DEFAULT_BODY = 1 * MB
MAX_JSON_DEPTH = 64
MAX_NAME = 255
MAX_MESSAGE_BYTES = 4096
TRUNCATED = "… [truncated]"
HEADER_TIMEOUT = 10.0  # seconds a connection has to send a whole request head
BODY_TIMEOUT = 30.0  # seconds a request body may pause between two bytes
KEEP_ALIVE = 5.0  # seconds an idle keep-alive connection stays open
MAX_HEAD_BYTES = 16 * 1024  # the most a request head (line and headers) may take
MAX_CONNECTIONS = 4096  # the default cap, when the descriptor limit allows that many
FD_RESERVE_MIN = 64  # descriptors kept back for the database, logs, agents' pipes, …

log = logging.getLogger("otto.limits")


class TooDeep(ValueError):
    """A JSON document nested deeper than `MAX_JSON_DEPTH`."""


# -- bodies --------------------------------------------------------------------------


def body_limit(method: str, path: str, objects: int) -> int:
    """The most bytes a request body may hold on this endpoint."""
    if path.startswith("/v1/webhooks/"):
        return WEBHOOK_BODY
    if path.startswith("/v1/objects/"):
        return objects
    if path in ("/v1/pipelines", "/v1/parse"):
        return PIPELINE_BODY
    return DEFAULT_BODY


def too_large_message(limit: int) -> str:
    return f"request body over {limit} bytes"


class BodyLimit:
    """ASGI middleware: every request body counted against its endpoint's limit as it
    streams, so no handler can be made to hold more than that in memory, and timed, so
    no client can hold a handler by sending a body a byte at a time.

    Past the limit the handler's `receive` says the client went away (it stops reading;
    whatever it answers is dropped) and this middleware answers 413 itself; after
    `idle` seconds without a byte of an unfinished body, likewise 408. Any answer sent
    before its request's body was read whole carries `Connection: close`: the rest of
    the body is then never read, rather than read and thrown away.
    """

    def __init__(
        self, app: ASGIApp, limit: Callable[[str, str], int], idle: float = BODY_TIMEOUT
    ) -> None:
        self.app = app
        self.limit = limit
        self.idle = idle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["method"], scope["path"])
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, "too_large", too_large_message(limit), limit=limit)
            return
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        length = int(declared) if declared is not None and declared.isdigit() else 0
        state = {"read": 0, "over": False, "done": not chunked and not length, "slow": False}
        started = False

        async def limited_receive() -> Message:
            if state["over"]:
                return {"type": "http.disconnect"}
            if state["done"]:  # e.g. a streaming answer listening for the disconnect
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.idle)
            except TimeoutError:
                state["over"] = state["slow"] = True
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                if state["read"] > limit:
                    state["over"] = True
                    return {"type": "http.disconnect"}
                if not message.get("more_body", False):
                    state["done"] = True
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if state["over"] and not started:
                return  # the handler's answer to a body cut short: ours goes instead
            if message["type"] == "http.response.start":
                started = True
                if not state["done"]:
                    extra = [(b"connection", b"close")]
                    message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["over"]:
                raise
        if state["over"] and not started:
            if state["slow"]:
                message = f"no byte of the request body for {self.idle:g} s"
                await _answer(send, 408, "body_timeout", message)
            else:
                await _answer(send, 413, "too_large", too_large_message(limit), limit=limit)


async def _answer(send: Send, status: int, code: str, message: str, **extra: Any) -> None:
    """A JSON error that closes the connection (the rest of the body is never read)."""
    body = json.dumps({"error": {"code": code, "message": message, **extra}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"x-otto-error", code.encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- JSON ----------------------------------------------------------------------------


def load_json(raw: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads`, refusing documents nested deeper than `max_depth` (`TooDeep`).

    The depth is checked without recursion after parsing; a document deep enough to
    exhaust the parser's own recursion is `TooDeep` as well."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise TooDeep(f"JSON nested deeper than {max_depth} levels") from None
    if _deeper_than(data, max_depth):
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    return data


def _deeper_than(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


# -- strings -------------------------------------------------------------------------


def has_control(text: str) -> bool:
    """Any C0 or C1 control character, DEL included."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)


def bounded_message(message: str | None) -> str | None:
    """At most `MAX_MESSAGE_BYTES` bytes of UTF-8: a longer message keeps its start,
    cut at a character boundary, and ends with `TRUNCATED`."""
    if message is None or len(message) * 4 <= MAX_MESSAGE_BYTES:
        return message
    data = message.encode("utf-8", "surrogatepass")
    if len(data) <= MAX_MESSAGE_BYTES:
        return message
    room = MAX_MESSAGE_BYTES - len(TRUNCATED.encode())
    return data[:room].decode("utf-8", "ignore") + TRUNCATED


def bounded_name(value: str | None) -> str | None:
    """A name (`trigger`, …) from somewhere other than a client: cut to `MAX_NAME`."""
    if value is None or len(value) <= MAX_NAME:
        return value
    return value[: MAX_NAME - len(TRUNCATED)] + TRUNCATED


# -- connections ---------------------------------------------------------------------


def raise_nofile(cap: int = 1 << 20) -> int:
    """Lift the soft descriptor limit to the hard one (at most `cap`) where allowed;
    the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("could not raise the descriptor limit from %d to %d: %s", soft, target, exc)
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def listen_backlog(descriptors: int) -> int:
    """The listen queue, which is also how many connections asyncio accepts in one go
    before any of them reaches `GuardedH11Protocol` (so before one can be refused): kept
    small beside the descriptor limit."""
    return max(8, min(128, descriptors // 16))


def connection_limit(descriptors: int, wanted: int = 0) -> int:
    """How many connections to hold open at once: `wanted` (0: `MAX_CONNECTIONS`), but
    always below the descriptor limit. Kept back: `FD_RESERVE_MIN` for what else the
    server opens (database, logs, agents' pipes), and four accept bursts, since a burst
    is accepted before the protocol can refuse any of it — an `accept()` that fails for
    want of a descriptor makes asyncio log a traceback per pending connection."""
    reserve = max(FD_RESERVE_MIN + 4 * listen_backlog(descriptors), descriptors // 4)
    return max(8, min(wanted or MAX_CONNECTIONS, descriptors - reserve))


SERVICE_UNAVAILABLE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"connection: close\r\nretry-after: 1\r\ncontent-length: %d\r\n\r\n%s"
)
TOO_MANY = b'{"error": {"code": "too_many_connections", "message": "try again shortly"}}'


# The scope extension by which a request's app may take its connection over
# (`GuardedH11Protocol.detach`).
DETACH = "otto.detach"


class Detached(NamedTuple):
    """A connection taken over: its socket, and `release` (callable from any thread)
    for when it is closed."""

    sock: socket.socket
    release: Callable[[], Any]


class _HeldConnection:
    """A detached connection's place among the server's connections (what the cap
    counts); shut down by the server (stopping) or released by its owner."""

    def __init__(self, connections: set[Any]) -> None:
        self.connections = connections

    def shutdown(self) -> None:
        self.connections.discard(self)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head timeout and a connection cap.

    `header_timeout` runs from the moment the server waits for a request head (a new
    connection, or the end of the previous response on a kept-alive one) until the whole
    head has arrived; a connection still without one then is closed, however slowly it
    trickles bytes (uvicorn's keep-alive timer stops at the first byte). Configure the
    class attributes with `configured` before serving.
    """

    header_timeout: float = HEADER_TIMEOUT
    max_connections: int = MAX_CONNECTIONS

    @classmethod
    def configured(cls, header_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
        attrs = {"header_timeout": header_timeout, "max_connections": max_connections}
        return type("GuardedH11Protocol", (cls,), attrs)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: Any = None
        self._waiting_since = 0.0

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections and not self._evict_one():
            transport.write(SERVICE_UNAVAILABLE % (len(TOO_MANY), TOO_MANY))
            transport.close()
            return
        self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self._head_timer is not None and self.conn.their_state is not h11.IDLE:
            self._disarm()  # the head is in: the request is the app's to time
        scope = getattr(self, "scope", None)
        if scope is not None:  # the request's scope: its app may take the connection
            scope.setdefault("extensions", {})[DETACH] = self.detach

    def detach(self) -> Detached | None:
        """Hand the connection over to be answered elsewhere (a long-lived stream, served
        from another thread): a duplicate of its socket, this protocol's own closed, so
        that the request's app returns without answering. It still counts against
        `max_connections` until its new owner calls `release`. None when it cannot be
        handed over (bytes of an earlier answer not yet sent)."""
        transport = self.transport
        raw = transport.get_extra_info("socket")
        if raw is None or transport.is_closing() or transport.get_write_buffer_size():
            return None
        duplicate = socket.socket(fileno=os.dup(raw.fileno()))
        self._disarm()
        transport.close()
        held = _HeldConnection(self.connections)
        self.connections.add(held)
        return Detached(duplicate, partial(self.loop.call_soon_threadsafe, held.shutdown))

    def on_response_complete(self) -> None:
        self._arm()  # before: a pipelined request handled inside disarms it again
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._waiting_since = self.loop.time()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def _evict_one(self) -> bool:
        """Close the connection that has waited longest for a request head, if any."""
        waiting = [
            c
            for c in self.connections
            if c is not self and getattr(c, "_head_timer", None) is not None
        ]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda c: c._waiting_since)
        oldest._disarm()
        oldest.transport.close()
        return True
