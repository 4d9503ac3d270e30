"""`GET /v1/events` streams, served by a thread of their own so that no number of
subscribers can delay the API.

The API's event loop only parses a stream's request; then it hands the connection's
socket over (`otto.limits.GuardedH11Protocol.detach`) and `FanOut` writes the response
from its own event loop. Per commit it reads the new transitions from the hub once,
frames each once, joins the frames once per distinct filter, and writes that chunk to
every live stream with the filter: no per-subscriber wake-up, copy or encoding.

A new stream first catches up from its cursor (the ring, else the log), page by page as
its socket drains; then it is live. A live stream that stops reading has its chunks
queue in its transport; past `BACKLOG` bytes it is sent a `resync` event naming the seq
to resume from (also its id, which an EventSource resends as Last-Event-ID) and is
closed: it catches up from the log when it reconnects, instead of being queued for
without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from otto.psm.events import PAGE, EventFilter, EventHub, sse_frame
from otto.psm.records import Transition

log = logging.getLogger(__name__)

BACKLOG = 256 * 1024  # bytes queued for one live stream before it is told to resync
RESYNC_GRACE = 10.0  # seconds a dropped stream's client has to read its resync event
HEARTBEAT_SECONDS = 15.0
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"x-accel-buffering: no\r\nx-content-type-options: nosniff\r\n"
    b"referrer-policy: same-origin\r\nconnection: close\r\n\r\nretry: 1000\n\n"
)
KEEP_ALIVE = b": keep-alive\n\n"


def resync_frame(after: int) -> bytes:
    return b'id: %d\nevent: resync\ndata: {"after": %d}\n\n' % (after, after)


class Stream(asyncio.Protocol):
    """One subscriber's connection, on the fan-out's loop. `cursor`: the seq up to which
    everything it asked for has been written to it."""

    def __init__(
        self, fanout: FanOut, only: EventFilter, after: int, on_close: Callable[[], Any]
    ) -> None:
        self.fanout, self.only, self.cursor = fanout, only, after
        self.on_close = on_close
        self.transport: asyncio.WriteTransport | None = None
        self.open = True
        self.writable = asyncio.Event()
        self.writable.set()
        self.catching_up: asyncio.Task[None] | None = None  # held: the loop's ref is weak

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self.transport = transport
        transport.write(HEAD)
        self.fanout.joined(self)

    def data_received(self, data: bytes) -> None:
        pass  # a subscriber has nothing more to say

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.writable.set()
        self.fanout.left(self)
        with contextlib.suppress(RuntimeError):  # the server's loop is gone: nothing to tell
            self.on_close()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def write(self, chunk: bytes) -> None:
        if self.open and self.transport is not None:
            self.transport.write(chunk)

    def deliver(self, chunk: bytes, upto: int, backlog: int) -> None:
        """Live: `chunk` holds what it asked for of the transitions up to `upto`."""
        assert self.transport is not None
        if self.transport.is_closing():  # gone: `connection_lost` is on its way
            return
        if self.transport.get_write_buffer_size() > backlog:
            self.resync()
            return
        self.transport.write(chunk)
        self.cursor = upto

    def resync(self) -> None:
        """Fallen behind: say where to resume from, then close (forcibly if the client
        does not read even that within `RESYNC_GRACE`)."""
        assert self.transport is not None
        self.fanout.left(self)
        self.transport.write(resync_frame(self.cursor))
        self.transport.close()
        asyncio.get_running_loop().call_later(RESYNC_GRACE, self.transport.abort)


class FanOut:
    """The thread that serves every detached event stream (see the module docstring)."""

    def __init__(
        self, hub: EventHub, backlog: int = BACKLOG, heartbeat: float = HEARTBEAT_SECONDS
    ) -> None:
        self.hub = hub
        self.backlog = backlog
        self.heartbeat = heartbeat
        self.seen = hub.last_seq  # what live streams have been given
        self._streams: set[Stream] = set()
        self._live: dict[EventFilter, set[Stream]] = defaultdict(set)
        self._loop: asyncio.AbstractEventLoop | None = None  # its own, from `start` on
        self._thread = threading.Thread(target=self._run, name="otto-events", daemon=True)

    @property
    def running(self) -> bool:
        return self._loop is not None and self._thread.is_alive() and not self._loop.is_closed()

    def start(self) -> None:
        self.seen = self.hub.last_seq
        self._loop = asyncio.new_event_loop()
        self._thread.start()

    def stop(self) -> None:
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def attach(
        self,
        sock: socket.socket,
        only: EventFilter,
        after: int,
        on_close: Callable[[], Any] = lambda: None,
    ) -> None:
        """Serve `sock` (an HTTP connection whose request asked for this stream) the
        transitions after `after` that match `only`; `on_close` once it is closed. From
        any thread."""
        assert self._loop is not None, "attach to a started fan-out"
        stream = Stream(self, only, after, on_close)
        asyncio.run_coroutine_threadsafe(self._attach(sock, stream), self._loop)

    def subscribers(self) -> int:
        return len(self._streams)

    # -- on the fan-out's loop ---------------------------------------------------------
    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        tasks = [loop.create_task(self._pump()), loop.create_task(self._beat())]
        try:
            loop.run_forever()
        finally:
            for stream in list(self._streams):
                if stream.transport is not None:
                    stream.transport.abort()
            for task in tasks:
                task.cancel()
            pending = asyncio.all_tasks(loop)
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _attach(self, sock: socket.socket, stream: Stream) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: stream, sock)
        except OSError:  # gone before it was served
            sock.close()
            stream.on_close()

    def joined(self, stream: Stream) -> None:
        self._streams.add(stream)
        stream.catching_up = asyncio.get_running_loop().create_task(self._catch_up(stream))

    def left(self, stream: Stream) -> None:
        self._streams.discard(stream)
        members = self._live.get(stream.only)
        if members is not None:
            members.discard(stream)
            if not members:
                del self._live[stream.only]

    async def _catch_up(self, stream: Stream) -> None:
        try:
            await self._read_up(stream)
        except Exception:  # the log unreadable: its client reconnects and tries again
            log.exception("an event stream could not catch up")
            if stream.transport is not None:
                stream.transport.abort()

    async def _read_up(self, stream: Stream) -> None:
        """From its cursor to what live streams have been given, paced by its socket."""
        while stream.open:
            seen = self.seen
            if stream.cursor == seen:
                self._live[stream.only].add(stream)
                return
            if stream.cursor > seen:  # it has seen more than this replica has yet
                await asyncio.sleep(0.05)
                continue
            page = await asyncio.to_thread(
                self.hub.encoded_after, stream.cursor, PAGE, None, stream.only
            )
            shown = [e for e in page if e[0].seq <= seen]
            if shown:
                stream.write(b"".join(sse_frame(t, data) for t, data in shown))
            whole = len(shown) == PAGE  # else nothing more up to `seen` matches
            stream.cursor = shown[-1][0].seq if whole else seen
            await stream.writable.wait()

    async def _pump(self) -> None:
        while True:
            await self.hub.wait_async(self.seen, self.heartbeat)
            try:  # from the log, if this thread fell behind the ring
                batch = self.hub.encoded_after(self.seen, PAGE)
            except Exception:
                log.exception("the event fan-out could not read new transitions")
                await asyncio.sleep(1.0)
                continue
            if batch:
                self._deliver(batch)
                self.seen = batch[-1][0].seq

    def _deliver(self, batch: list[tuple[Transition, bytes]]) -> None:
        """Each transition framed once, each filter's chunk joined once."""
        frames = [sse_frame(t, data) for t, data in batch]
        upto = batch[-1][0].seq
        by_pipeline: dict[str, list[int]] | None = None
        for only, members in list(self._live.items()):
            if only.pipeline is None:
                chosen = [f for (t, _), f in zip(batch, frames, strict=True) if only.matches(t)]
            else:
                if by_pipeline is None:
                    by_pipeline = _positions_by_pipeline(batch)
                positions = by_pipeline.get(only.pipeline, [])
                chosen = [frames[i] for i in positions if only.matches(batch[i][0])]
            if chosen:
                chunk = b"".join(chosen)
                for stream in list(members):
                    stream.deliver(chunk, upto, self.backlog)

    async def _beat(self) -> None:
        """A comment now and then, so that clients and proxies know the stream is alive
        however little of it matches."""
        while True:
            await asyncio.sleep(self.heartbeat)
            for stream in list(self._streams):
                stream.write(KEEP_ALIVE)


def _positions_by_pipeline(batch: list[tuple[Transition, bytes]]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = defaultdict(list)
    for i, (t, _) in enumerate(batch):
        found[t.pipeline].append(i)
    return found
