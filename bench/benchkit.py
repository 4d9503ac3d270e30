"""What the benchmarks share: submitting pipelines at once, following a server's event
stream for their completions, driving pipelines through a PSM from several threads."""

from __future__ import annotations

import contextlib
import http.client
import json
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar
from urllib.parse import urlsplit

import httpx


class Completions:
    """Follows the event stream; records when each pipeline completes."""

    def __init__(self, url: str) -> None:
        self.done: dict[str, float] = {}
        self.cond = threading.Condition()
        last = httpx.get(f"{url}/v1/events", params={"after": 0, "limit": 10_000}).json()
        after = last["events"][-1]["seq"] if last["events"] else 0
        self.thread = threading.Thread(target=self._follow, args=(url, after), daemon=True)
        self.thread.start()

    def _follow(self, url: str, after: int) -> None:
        # The standard library's client, line by line: httpx would take several times the
        # CPU, from the server under test, on the same cores.
        address = urlsplit(url)
        connection = http.client.HTTPConnection(address.hostname, address.port)
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(after)}
        # The server stops at the end of the run.
        with contextlib.suppress(OSError, http.client.HTTPException):
            connection.request("GET", "/v1/events", headers=headers)
            response = connection.getresponse()
            while line := response.readline():
                if line.startswith(b"data: ") and b'"Complete"' in line:
                    event = json.loads(line[6:])
                    if event["entity"] == "pipeline":
                        with self.cond:
                            self.done[event["pipeline"]] = time.perf_counter()
                            self.cond.notify_all()

    def wait(self, uuids: list[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not all(u in self.done for u in uuids):
                if not self.cond.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"{sum(u in self.done for u in uuids)}/{len(uuids)} done")


JSON_HEADERS = {"Content-Type": "application/json"}


T = TypeVar("T")


def drive_concurrently(items: Iterable[T], threads: int, drive: Callable[[T], None]) -> float:
    """Seconds for `threads` workers to `drive` every item, each taken once."""
    work: queue.SimpleQueue[T | None] = queue.SimpleQueue()
    for item in items:
        work.put(item)
    for _ in range(threads):
        work.put(None)

    def worker() -> None:
        while (item := work.get()) is not None:
            drive(item)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return time.perf_counter() - started


def submit_at_once(url: str, ottofile: str, count: int, threads: int = 8) -> list[str]:
    """Submit `count` pipelines from `threads` connections at once; their uuids. The
    standard library's client: a tenth of httpx's CPU per request, which would otherwise
    be taken from the server under test on the same cores."""
    uuids: list[str] = []
    lock = threading.Lock()
    body = json.dumps({"ottofile": ottofile}).encode()
    address = urlsplit(url)

    def submit(n: int) -> None:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        try:
            for _ in range(n):
                connection.request("POST", "/v1/pipelines", body, JSON_HEADERS)
                u = json.loads(connection.getresponse().read())["uuid"]
                with lock:
                    uuids.append(u)
        finally:
            connection.close()

    shares = [count // threads + (i < count % threads) for i in range(threads)]
    submitters = [threading.Thread(target=submit, args=(n,)) for n in shares if n]
    for t in submitters:
        t.start()
    for t in submitters:
        t.join()
    return uuids
