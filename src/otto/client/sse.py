"""The event stream of `GET /v1/events`, read with `otto.sse`'s line parser.

`EventStream` yields each transition once, in order. When the connection drops
(a server restart, a proxy timeout), or the server sends `resync` (this stream fell
behind), it reconnects with `Last-Event-ID` set to the last sequence number it
yielded (or the one `resync` names), so nothing is missed or seen twice; it
gives up with `ServerUnavailable` only after `give_up_after` seconds without
a connection.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx

from otto.client.errors import ServerUnavailable, error_from
from otto.sse import SseParser

# The server sends a keep-alive comment every 15 s; a longer silence is a dead connection.
READ_TIMEOUT = 45.0
RESYNC = "resync"  # the server dropped a stream that fell behind; `after` says where to resume


class EventStream:
    """Transitions after `after` (optionally of one pipeline), live, resuming after drops."""

    def __init__(
        self,
        http: httpx.Client,
        after: int = 0,
        pipeline: str | None = None,
        give_up_after: float = 30.0,
    ) -> None:
        self.http = http
        self.last_seq = after
        self.pipeline = pipeline
        self.give_up_after = give_up_after
        self.reconnects = 0
        self.resyncs = 0  # times the server said this stream fell behind

    def __iter__(self) -> Iterator[dict[str, Any]]:
        down_since: float | None = None
        delay = 0.2
        while True:
            try:
                for event in self._connect():
                    down_since = None
                    yield event
                down_since = None  # the server ended the stream cleanly: reconnect at once
            except (httpx.TransportError, ServerUnavailable) as exc:
                now = time.monotonic()
                down_since = down_since or now
                if now - down_since >= self.give_up_after:
                    if isinstance(exc, ServerUnavailable):
                        raise
                    raise ServerUnavailable(
                        f"lost the event stream of {self.http.base_url} and could not "
                        f"reconnect within {self.give_up_after:g} s: {exc}"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            else:
                delay = 0.2
            self.reconnects += 1

    def _connect(self) -> Iterator[dict[str, Any]]:
        params: dict[str, str | int] = {"after": self.last_seq}
        if self.pipeline:
            params["pipeline"] = self.pipeline
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(self.last_seq)}
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
        with self.http.stream(
            "GET", "/v1/events", params=params, headers=headers, timeout=timeout
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise error_from(response)
            parser = SseParser()
            for line in response.iter_lines():
                event = parser.feed(line)
                if event is not None and event.event == RESYNC:
                    # Fallen behind: resume from the log where the server says.
                    self.last_seq = max(self.last_seq, int(json.loads(event.data)["after"]))
                    self.resyncs += 1
                    return
                if event is None or event.event != "transition":
                    continue
                transition = json.loads(event.data)
                seq = int(transition["seq"])
                if seq <= self.last_seq:
                    continue  # never yield one twice, whatever the server resends
                self.last_seq = seq
                yield transition
