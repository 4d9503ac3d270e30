"""Load held: many SSE subscribers while pipelines are offered at a steady rate.

A real `otto server` (no orchestrator: only pipeline creation and its transitions
are measured) with N SSE subscribers connected — 10 % unfiltered, 60 % on the runs
list (`?entity=pipeline`), 30 % on a run page (`?pipeline=UUID` of a run made before
the load) — while pipelines are offered at RATE/s for SECONDS. Prints:

- pipelines accepted vs offered (the creates answered within the offering window);
- the API's latency meanwhile: p50/p99 of `GET /v1/pipelines` (the baseline, in the
  same run: the same request with no subscriber and no load);
- the server's peak RSS;
- for every subscriber, whether its stream held exactly the transitions its filter
  asks for (a `resync` event followed by a reconnection with Last-Event-ID counts, and
  is counted).

Targets (the defaults): every pipeline accepted at the offered rate, API p99 ≤ 100 ms,
RSS ≤ 200 MB, every stream complete or explicitly resynced. `--source DIR` runs the
server from another checkout (e.g. `git worktree add /tmp/base HEAD`) to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing as mp
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from array import array
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from benchkit import JSON_HEADERS  # noqa: E402
from serverkit import running_server  # noqa: E402

FRAME = re.compile(rb"id: (\d+)\nevent: (\w+)\ndata: ([^\n]*)\n\n")
ONE_STEP = json.dumps({"ottofile": "pipeline { steps { sh 'true' } }"}).encode()
PROCESSES = 4  # subscriber processes
WATCHED_RUNS = 20  # runs made before the load, for the run-page subscribers


# -- subscribers (in their own processes: their reading must not be the server's CPU) --
class Follower:
    """One subscriber: `query`'s stream from `after`, reconnecting after a resync or a
    drop with Last-Event-ID; records the seqs of the transitions its filter matches
    (checked here as well, so an old server that ignores the filter is measured fairly)."""

    def __init__(self, host: str, port: int, query: str, after: int) -> None:
        self.host, self.port, self.query, self.cursor = host, port, query, after
        self.seqs = array("q")
        self.resyncs = 0
        self.connected = asyncio.Event()
        pipeline = query.partition("pipeline=")[2]
        entity = query.partition("entity=")[2]
        self.marker = (
            f'"pipeline": "{pipeline}"'.encode()
            if pipeline
            else f'"entity": "{entity}"'.encode()
            if entity
            else b""
        )

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._connect(stop)
            except OSError:
                await asyncio.sleep(0.2)

    async def _connect(self, stop: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        writer.write(
            f"GET /v1/events{self.query} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Accept: text/event-stream\r\nLast-Event-ID: {self.cursor}\r\n\r\n".encode()
        )
        self.connected.set()
        pending = b""
        try:
            # By the chunk, the events in it by one regular expression: the subscribers'
            # CPU is taken from the server under test, on the same cores.
            while chunk := await reader.read(1 << 16):
                pending += chunk
                cut = pending.rfind(b"\n\n")
                if cut < 0:
                    continue
                whole, pending = pending[: cut + 2], pending[cut + 2 :]
                for ident, event, data in FRAME.findall(whole):
                    if event == b"resync":
                        self.resyncs += 1
                        self.cursor = max(self.cursor, json.loads(data)["after"])
                        return
                    seq = int(ident)
                    if seq > self.cursor:
                        self.cursor = seq
                        if self.marker in data:
                            self.seqs.append(seq)
        finally:
            writer.close()
        if not stop.is_set():
            await asyncio.sleep(0.2)  # dropped: reconnect


def _subscriber_process(url: str, queries: list[str], after: int, ready: Any, pipe: Any) -> None:
    address = urlsplit(url)

    async def main() -> None:
        stop = asyncio.Event()
        followers = [Follower(address.hostname or "", address.port or 0, q, after) for q in queries]
        tasks = [asyncio.create_task(f.run(stop)) for f in followers]
        for f in followers:
            await f.connected.wait()
            with ready.get_lock():
                ready.value += 1
        expected: dict[str, list[int]] = await asyncio.to_thread(pipe.recv)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
            list(f.seqs[-1:]) != expected[f.query][-1:] for f in followers
        ):
            await asyncio.sleep(0.2)
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        verdicts = []
        for f in followers:
            complete = f.seqs.tolist() == expected[f.query]
            verdicts.append(("complete" if complete else "incomplete", f.resyncs))
        pipe.send(verdicts)

    asyncio.run(main())


# -- the driver -----------------------------------------------------------------------
def queries_for(count: int, watched: list[str]) -> list[str]:
    found = []
    for i in range(count):
        if i % 10 == 0:
            found.append("")
        elif i % 10 <= 6:
            found.append("?entity=pipeline")
        else:
            found.append(f"?pipeline={watched[i % len(watched)]}")
    return found


def offer(url: str, rate: float, seconds: float, workers: int = 32) -> tuple[int, int, float]:
    """Creates offered at `rate`/s for `seconds` (open loop: each at its time, whatever
    the answers before it); (offered, accepted within the window, last answer's time)."""
    address = urlsplit(url)
    offered = int(rate * seconds)
    started = time.perf_counter()
    end = started + seconds
    lock = threading.Lock()
    accepted, last = [0], [started]
    slots = iter(range(offered))

    def worker() -> None:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        while True:
            with lock:
                i = next(slots, None)
            if i is None:
                return
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                connection.request("POST", "/v1/pipelines", ONE_STEP, JSON_HEADERS)
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                continue
            answered = time.perf_counter()
            if response.status in (200, 201) and answered <= end + 1 / rate:
                with lock:
                    accepted[0] += 1
                    last[0] = max(last[0], answered)

    pool = [threading.Thread(target=worker) for _ in range(workers)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return offered, accepted[0], last[0] - started


def api_latency(url: str, stop: threading.Event, every: float = 0.05) -> list[float]:
    """`GET /v1/pipelines` (the runs list's data) until `stop`; each answer's time."""
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    times: list[float] = []
    while not stop.is_set():
        started = time.perf_counter()
        connection.request("GET", "/v1/pipelines?limit=50")
        connection.getresponse().read()
        times.append(time.perf_counter() - started)
        time.sleep(max(0.0, every - times[-1]))
    return times


class PeakRss(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stopping = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            kb = int(
                next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]
            )
            self.peak = max(self.peak, kb * 1024)


def log_after(url: str, after: int) -> list[dict[str, Any]]:
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    found: list[dict[str, Any]] = []
    while True:
        connection.request("GET", f"/v1/events?after={after}&limit=10000")
        page = json.loads(connection.getresponse().read())["events"]
        if not page:
            return found
        found += page
        after = page[-1]["seq"]


def expected_by_query(log: list[dict[str, Any]], queries: set[str]) -> dict[str, list[int]]:
    def matches(query: str, event: dict[str, Any]) -> bool:
        if "pipeline=" in query:
            return event["pipeline"] == query.partition("pipeline=")[2]
        if "entity=" in query:
            return event["entity"] == query.partition("entity=")[2]
        return True

    return {q: [e["seq"] for e in log if matches(q, e)] for q in queries}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] * 1000 if ordered else 0.0


def run(url: str, pid: int, subscribers: int, rate: float, seconds: float) -> None:
    address = urlsplit(url)
    watched = []
    for _ in range(WATCHED_RUNS):
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        connection.request("POST", "/v1/pipelines", ONE_STEP, JSON_HEADERS)
        watched.append(json.loads(connection.getresponse().read())["uuid"])
    idle = threading.Event()
    idle_timer = threading.Timer(3.0, idle.set)
    idle_timer.start()
    quiet = api_latency(url, idle)
    start = max([e["seq"] for e in log_after(url, 0)] or [0])

    queries = queries_for(subscribers, watched)
    ready, procs, pipes = mp.Value("i", 0), [], []
    for n in range(PROCESSES):
        ours, theirs = mp.Pipe()
        share = queries[n::PROCESSES]
        proc = mp.Process(target=_subscriber_process, args=(url, share, start, ready, theirs))
        proc.start()
        procs.append(proc)
        pipes.append(ours)
    while ready.value < subscribers:
        time.sleep(0.1)
    time.sleep(1.0)  # every request head read and its stream handed over

    rss = PeakRss(pid)
    rss.start()
    stop = threading.Event()
    latencies: list[float] = []
    prober = threading.Thread(target=lambda: latencies.extend(api_latency(url, stop)))
    prober.start()
    offered, accepted, took = offer(url, rate, seconds)
    stop.set()
    prober.join()

    expected = expected_by_query(log_after(url, start), set(queries))
    for pipe in pipes:
        pipe.send(expected)
    verdicts = [v for pipe in pipes for v in pipe.recv()]
    for proc in procs:
        proc.join(timeout=30)
    rss.stopping.set()
    rss.join()

    complete = sum(1 for v, _ in verdicts if v == "complete")
    resynced = sum(1 for v, r in verdicts if v == "complete" and r)
    print(
        f"{subscribers} subscribers (10 % unfiltered, 60 % ?entity=pipeline, "
        f"30 % ?pipeline=UUID), pipelines offered at {rate:g}/s for {seconds:g} s:"
    )
    print(
        f"  pipelines accepted {accepted}/{offered} "
        f"({accepted / max(took, 1e-9):.1f}/s accepted vs {rate:g}/s offered)"
    )
    print(
        f"  GET /v1/pipelines: p50 {pct(latencies, 50):.0f} ms, p99 {pct(latencies, 99):.0f} ms "
        f"({len(latencies)} requests; baseline with no subscribers or load: "
        f"p50 {statistics.median(quiet) * 1000:.1f} ms, p99 {pct(quiet, 99):.1f} ms; "
        f"ratio p99 {pct(latencies, 99) / max(pct(quiet, 99), 1e-9):.1f}x)"
    )
    print(f"  server peak RSS {rss.peak / 2**20:.0f} MB")
    print(
        f"  streams: {complete}/{len(verdicts)} hold exactly their filter's transitions "
        f"({resynced} of them after a resync); {len(verdicts) - complete} incomplete"
    )
    print("  targets: all accepted at the offered rate, p99 <= 100 ms, RSS <= 200 MB, 0 incomplete")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--source", type=Path, help="run the server from this checkout")
    args = parser.parse_args()
    env = {"OTTO_LOCAL_ORCHESTRATOR": "0"}
    if args.source:
        env["PYTHONPATH"] = str(args.source.resolve() / "src")
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server(Path(tmp) / "home", **env) as server,
    ):
        run(server.url, server.process.pid, args.subscribers, args.rate, args.seconds)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
