"""Streaming step output to the object store while the step runs.

Output is masked and buffered, then appended to the log's key in
offset-checked chunks: when `flush_bytes` are waiting, or when the oldest
waiting byte is `flush_interval` seconds old (the agent's process loop calls
`LogWriter.tick()`), whichever comes first. A log's first output goes out at
once, so a reader finds the log as soon as its step starts. `close()` stores
the rest, so when a step is reported finished its log is complete; sealing it
(`compact`: its checksum, S3 pieces merged) waits for the next tick, which
runs while the next step's process starts, or for `LogWriter.close()`.

A log has a size limit (`max_bytes`, the invocation's `max_log_bytes`): past it, the
log keeps its first `max_bytes` bytes and a line saying it was cut, and its writer's
`on_stop` hears `Stop(Failed, "log_limit")` (the agent stops the step's process, as a
timeout does). A log the store refuses for lack of space, or cannot reach, fails with
a reason naming it (`disk_full: …`, `store_unavailable: …`) and its step is stopped
too: its output has nowhere to go. A refused append leaves nothing behind in the store,
so the retries resume at the same offset.

Store calls happen in the thread that writes or ticks (the agent's main
thread, or the control server's for a note in the context log): a background
thread busy with small appends would contend with the agent's process handling
for the GIL. Only a flood of output is appended by a helper thread, so reading
the pipe goes on while a big chunk is written (the GIL is free meanwhile).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from otto.agent.masking import Masker
from otto.agent.process import Stop
from otto.diskspace import trouble
from otto.objectstore import ObjectNotFound, ObjectStore, OffsetMismatch
from otto.status import Status

FLUSH_BYTES = 4 << 20
# A producer waits for the store when this much of its output is waiting.
MAX_PENDING = 64 << 20
FLUSH_INTERVAL = 0.2
RETRY_DELAYS = (0.1, 0.5, 1.0)
LOG_LIMIT = "log_limit"


class LogWriter:
    """The open logs of an agent, flushed on time by `tick()`."""

    def __init__(
        self,
        store: ObjectStore,
        masker: Masker | None = None,
        *,
        flush_bytes: int = FLUSH_BYTES,
        flush_interval: float = FLUSH_INTERVAL,
        max_bytes: int | None = None,
        on_stop: Callable[[LogStream, Stop], None] | None = None,
    ) -> None:
        self.store = store
        self.masker = masker or Masker()
        self.flush_bytes = flush_bytes
        self.flush_interval = flush_interval
        self.max_bytes = max_bytes  # per log; None: no limit
        self.on_stop = on_stop  # a log that cannot take more: what its producer must do
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._open: list[LogStream] = []
        self._unsealed: list[LogStream] = []
        self._floods: list[LogStream] = []
        self._flood_wakeup = threading.Condition(self._lock)
        self._helper: threading.Thread | None = None
        self._stopping = False

    def open(self, key: str) -> LogStream:
        stream = LogStream(self, key)
        with self._lock:
            self._open.append(stream)
        return stream

    def tick(self) -> float | None:
        """Store what is due, seal closed logs; when (time.monotonic()) to tick next."""
        with self._lock:
            streams = list(self._open)
            unsealed, self._unsealed = self._unsealed, []
        now = time.monotonic()
        soonest: float | None = None
        for stream in streams:
            due = stream.due_at()
            if due is None:
                continue
            if due <= now:
                stream.flush()
            else:
                soonest = due if soonest is None else min(soonest, due)
        for stream in unsealed:
            stream.seal()
        return soonest

    def close(self) -> list[str]:
        """Close and seal every log; the errors met since the start."""
        with self._lock:
            streams = list(self._open)
        for stream in streams:
            stream.close()
        with self._lock:
            self._stopping = True
            self._flood_wakeup.notify_all()
            helper = self._helper
        if helper is not None:
            helper.join()
        self.tick()
        return self.errors

    def flood(self, stream: LogStream) -> None:
        """Have the helper thread append what `stream` has waiting (its buffer is full)."""
        with self._lock:
            if stream not in self._floods:
                self._floods.append(stream)
                self._flood_wakeup.notify_all()
            if self._helper is None:
                self._helper = threading.Thread(target=self._help, name="otto log", daemon=True)
                self._helper.start()

    def _help(self) -> None:
        while True:
            with self._lock:
                while not self._floods and not self._stopping:
                    self._flood_wakeup.wait()
                if not self._floods:
                    return
                stream = self._floods.pop(0)
            stream.flush()

    def stream_closed(self, stream: LogStream, seal: bool) -> None:
        """`stream` was closed: no longer open; sealed at the next tick if `seal`."""
        with self._lock:
            self._open.remove(stream)
            if seal:
                self._unsealed.append(stream)


class LogStream:
    """One append-only log object: `write()` as output arrives, `close()` at the end."""

    def __init__(self, writer: LogWriter, key: str) -> None:
        self.key = key
        self.error: str | None = None
        self._writer = writer
        self._store = writer.store
        self._masker = writer.masker.stream()
        self._lock = threading.Lock()  # the buffer
        self._io = threading.Lock()  # one append at a time, in order
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._since: float | None = None  # when the oldest pending byte arrived
        self._offset = 0
        self._accepted = 0  # bytes taken into the log so far (stored or pending)
        self.cut = False  # the log reached its writer's `max_bytes`
        self._started = False
        self._cleared = False
        self._closed = False

    @property
    def size(self) -> int:
        """Bytes stored so far."""
        return self._offset

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._closed:
                raise ValueError(f"log {self.key} is closed")
            was_cut = self.cut
            data = self._take(self._masker.feed(data))
            if not data or self.error is not None:
                return
            if self._since is None:
                # The first output is due at once: readers find the log early.
                self._since = time.monotonic() if self._started else 0.0
            self._pending.append(data)
            self._pending_size += len(data)
            size = self._pending_size
        if self.cut and not was_cut:
            self._stop(Stop(Status.FAILED, LOG_LIMIT))
        if size >= MAX_PENDING:
            self.flush()  # the store is slower than the producer: wait for it
        elif size >= self._writer.flush_bytes:
            self._writer.flood(self)

    def _take(self, data: bytes) -> bytes:
        """What of `data` the size limit lets in (the lock held); the part that reaches
        the limit comes with the line saying the log was cut, and nothing after it."""
        limit = self._writer.max_bytes
        if self.cut or not data:
            return b""
        if limit is None or self._accepted + len(data) <= limit:
            self._accepted += len(data)
            return data
        kept = data[: limit - self._accepted]
        self._accepted = limit
        self.cut = True
        return kept + self._cut_line()

    def _cut_line(self) -> bytes:
        return (
            f"\n[otto] log cut: it reached max_log_bytes ({self._writer.max_bytes} bytes); "
            "the rest of the output was dropped and the step stopped\n"
        ).encode()

    def _stop(self, stop: Stop) -> None:
        if self._writer.on_stop is not None:
            self._writer.on_stop(self, stop)

    def text(self, message: str) -> None:
        """A line of text (a newline is added when missing)."""
        self.write(message.encode() if message.endswith("\n") else f"{message}\n".encode())

    def due_at(self) -> float | None:
        since = self._since
        return None if since is None else since + self._writer.flush_interval

    def flush(self) -> None:
        """Store everything written so far."""
        with self._io:
            with self._lock:
                chunk = b"".join(self._pending)
                self._pending.clear()
                self._pending_size = 0
                self._since = None
            if chunk and self.error is None:
                self._append(chunk)

    def close(self) -> str | None:
        """Store the rest and seal the log; the error that broke it, if any."""
        with self._lock:
            if self._closed:
                return self.error
            self._pending.append(self._take(self._masker.finish()))
            self._closed = True
        self.flush()
        with self._io:
            if self.error is None and not self._started:
                self._put_empty()
        self._writer.stream_closed(self, seal=self._started and self.error is None)
        return self.error

    def _append(self, chunk: bytes) -> None:
        for delay in (*RETRY_DELAYS, None):
            try:
                self._started = True
                size = self._store.append(self.key, self._offset, chunk)
                if size != self._offset + len(chunk):  # a longer log was there already
                    raise OffsetMismatch(self.key, self._offset, size)
                self._offset = size
                return
            except OffsetMismatch as exc:
                if self._offset == 0 and not self._cleared:
                    self._cleared = True  # the log of an earlier attempt: start afresh
                    if self._retried(self._clear):
                        continue
                    return
                if not self._landed(chunk):
                    self._fail(exc)
                return
            except Exception as exc:  # any store failure (a backend may raise its own errors)
                if delay is None:
                    self._fail(exc)
                    return
                time.sleep(delay)

    def _landed(self, chunk: bytes) -> bool:
        """After a refused append: did an earlier, unanswered try of this chunk land?"""
        try:
            size = self._store.head(self.key).size
        except Exception:
            return False
        if size == self._offset + len(chunk):
            self._offset = size
            return True
        return False

    def _clear(self) -> None:
        with contextlib.suppress(ObjectNotFound):
            self._store.delete(self.key)

    def _put_empty(self) -> None:
        self._retried(
            lambda: self._store.put(self.key, b"", content_type="text/plain; charset=utf-8")
        )

    def seal(self) -> None:
        """Compact the stored log into one object (the writer calls it once closed)."""
        with self._io:
            self._retried(lambda: self._store.compact(self.key), "sealing")

    def _retried(self, request: Callable[[], object], what: str = "storing") -> bool:
        """Make a request that does the same however often it is made (a put, a delete,
        a compaction: whole or not at all), tried again after a failure, e.g. a replica
        that went away before it answered; False once the log failed for good."""
        for delay in (*RETRY_DELAYS, None):
            try:
                request()
                return True
            except Exception as exc:
                if delay is None:
                    self._fail(exc, what)
                    return False
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _fail(self, exc: Exception, what: str = "storing") -> None:
        kind = trouble(exc)  # disk_full, store_unavailable: the reason starts with its name
        with self._lock:
            self.error = f"{kind + ': ' if kind else ''}{what} log {self.key} failed: {exc}"
            self._pending.clear()
            self._pending_size = 0
            self._since = None
        self._writer.errors.append(self.error)
        if kind is not None and what == "storing":
            self._stop(Stop(Status.ERROR, self.error))  # its output has nowhere to go
