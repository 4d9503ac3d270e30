"""Event delivery over SSE, against a running `otto server` started here.

(a) 100 SSE subscribers connected while transitions are committed at about
100/s (≈ 10,000 deliveries/s in all): every subscriber must receive every
transition; prints p50/p99 latency from commit to receipt (target p99 ≤ 50 ms).
(b) One subscriber while transitions are committed as fast as 16 HTTP
clients can: it must keep up (receive all, finishing within a moment of the
last commit). Baseline for (b), in the same run: the commit rate itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from serverkit import running_server  # noqa: E402

ONE_STEP = "pipeline { steps { sh 'true' } }"  # 3 transitions when created


async def _subscribe(url: str, after: int, expect: int, ready: Any) -> list[float]:
    """A lean SSE consumer (raw asyncio, as a non-Python client would be): the figures
    should measure the server's delivery, not an HTTP library's parsing."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n"
        f"Last-Event-ID: {after}\r\n\r\n".encode()
    )
    await writer.drain()
    with ready.get_lock():
        ready.value += 1
    latencies: list[float] = []
    while len(latencies) < expect:
        line = await reader.readline()
        if not line:
            break
        if line.startswith(b"data: "):
            at = datetime.fromisoformat(json.loads(line[6:])["at"]).timestamp()
            latencies.append(time.time() - at)
    writer.close()
    return latencies


def _subscriber_process(
    url: str, after: int, expect: int, count: int, ready: Any, out: mp.Queue
) -> None:
    async def run() -> None:
        tasks = [_subscribe(url, after, expect, ready) for _ in range(count)]
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
        out.put([lat for r in results for lat in r] + [float(len(r)) * -1 for r in results])

    asyncio.run(run())


def fan_out(url: str, subscribers: int, rate: float, seconds: float) -> None:
    start_seq = _last_seq(url)
    creates = int(rate * seconds / 3)
    expect = creates * 3
    processes, out, ready = 4, mp.Queue(), mp.Value("i", 0)
    per = subscribers // processes
    procs = [
        mp.Process(target=_subscriber_process, args=(url, start_seq, expect, per, ready, out))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    while ready.value < per * processes:  # every subscriber connected
        time.sleep(0.05)
    with httpx.Client(base_url=url) as client:
        interval = 3 / rate
        started = time.perf_counter()
        for i in range(creates):
            client.post("/v1/pipelines", json={"ottofile": ONE_STEP})
            delay = started + (i + 1) * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    latencies, counts = [], []
    for _ in procs:
        values = out.get(timeout=180)
        latencies += [v for v in values if v >= 0]
        counts += [int(-v) for v in values if v < 0]
    for p in procs:
        p.join()
    latencies.sort()
    complete = sum(1 for c in counts if c == expect)
    print(
        f"(a) {len(counts)} subscribers x {expect} transitions at {rate:.0f}/s: "
        f"{complete}/{len(counts)} received every transition; "
        f"latency p50 {_pct(latencies, 50):.1f} ms, p99 {_pct(latencies, 99):.1f} ms "
        f"(target p99 <= 50 ms)"
    )


def keep_up(url: str, pipelines: int) -> None:
    start_seq = _last_seq(url)
    expect = pipelines * 3
    received: list[float] = []
    ready = threading.Event()

    def subscriber() -> None:
        with httpx.Client(timeout=None) as client:
            headers = {"Accept": "text/event-stream", "Last-Event-ID": str(start_seq)}
            with client.stream("GET", f"{url}/v1/events", headers=headers) as response:
                ready.set()
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        received.append(time.perf_counter())
                        if len(received) == expect:
                            return

    reader = threading.Thread(target=subscriber)
    reader.start()
    ready.wait()

    def producer(n: int) -> None:
        with httpx.Client(base_url=url) as client:
            for _ in range(n):
                client.post("/v1/pipelines", json={"ottofile": ONE_STEP})

    started = time.perf_counter()
    producers = [threading.Thread(target=producer, args=(pipelines // 16,)) for _ in range(16)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    committed = time.perf_counter()
    reader.join(timeout=60)
    rate = expect / (committed - started)
    lag = (received[-1] - committed) * 1000 if received else float("nan")
    print(
        f"(b) one subscriber: {len(received)}/{expect} transitions; commit rate (baseline) "
        f"{rate:,.0f}/s; receive rate {len(received) / (received[-1] - started):,.0f}/s; "
        f"last received {lag:.0f} ms after the last commit"
    )


def _last_seq(url: str) -> int:
    events = httpx.get(f"{url}/v1/events", params={"after": 0, "limit": 10_000}).json()["events"]
    return events[-1]["seq"] if events else 0


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * pct / 100))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    # Only event delivery is measured: no orchestrator runs the pipelines created.
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server(Path(tmp) / "home", OTTO_LOCAL_ORCHESTRATOR="0") as server,
    ):
        fan_out(server.url, args.subscribers, args.rate, args.seconds)
        keep_up(server.url, 1600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
