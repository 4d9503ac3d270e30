"""Abuse, against a running `otto server` started here (README, "Limits").

(a) 4 clients each stream a 200 MB chunked body at `POST /v1/pipelines` at once: prints
the server's peak RSS above idle (target ≤ 100 MB; before the fix each body was read
whole: 64 MB → 1.8 GB), how much of each body got out before the 413, and how long.
(b) 500 sockets each send half a request head and stop: prints `/health` latency while
they are held (target p99 ≤ 50 ms), the peak RSS above idle, and how many of the slow
sockets the server has closed once the header timeout has passed.

Baseline, in the same run and on the same server: its idle RSS, and `/health` latency
with nothing else going on.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from abusekit import (  # noqa: E402
    post_chunked,
    reset_peak,
    rss_kb,
    slow_header_sockets,
    still_open,
    timed_get,
)
from serverkit import running_server  # noqa: E402

MB = 1024 * 1024


def health_latency(url: str, count: int, fresh: bool) -> list[float]:
    """`count` GET /health round trips in ms, sorted: each on a new connection (`fresh`,
    as a health checker would; raw sockets, so no client library's set-up is counted),
    or all on one kept-alive connection."""
    port = int(url.rsplit(":", 1)[1])
    times = []
    with httpx.Client(base_url=url, timeout=10) as kept:
        for _ in range(count):
            if fresh:
                status, spent = timed_get(port)
                assert status == 200, status
            else:
                started = time.perf_counter()
                assert kept.get("/health").status_code == 200
                spent = (time.perf_counter() - started) * 1000
            times.append(spent)
    return sorted(times)


def _pct(values: list[float], pct: float) -> float:
    return values[min(len(values) - 1, int(len(values) * pct / 100))]


def _latency(label: str, url: str, count: int) -> None:
    fresh, kept = health_latency(url, count, True), health_latency(url, count, False)
    print(
        f"    {label}: /health p50 {_pct(fresh, 50):.1f} ms, p99 {_pct(fresh, 99):.1f} ms, "
        f"max {fresh[-1]:.1f} ms (new connection each); kept-alive p99 {_pct(kept, 99):.1f} ms"
    )


def huge_bodies(url: str, pid: int, clients: int, size: int) -> None:
    port = int(url.rsplit(":", 1)[1])
    idle, _ = rss_kb(pid)
    exact = reset_peak(pid)
    results = []

    def one() -> None:
        results.append(post_chunked(port, "/v1/pipelines", size))

    started = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spent = time.perf_counter() - started
    _, peak = rss_kb(pid)
    statuses = sorted({r.status for r in results})
    sent = [r.sent / MB for r in results]
    print(
        f"(a) {clients} × {size // MB} MB chunked bodies: answers {statuses} in {spent:.2f} s; "
        f"each sent {min(sent):.1f}–{max(sent):.1f} MB before the answer"
    )
    print(
        f"    peak RSS {peak / 1024:.0f} MB = idle + {(peak - idle) / 1024:.0f} MB "
        f"(target ≤ 100 MB){'' if exact else ' (peak since start: clear_refs refused)'}"
    )


def slow_heads(url: str, pid: int, count: int, timeout: float) -> None:
    port = int(url.rsplit(":", 1)[1])
    reset_peak(pid)
    idle, _ = rss_kb(pid)  # after the reset: the memory (a) left mapped counts as idle
    opened = time.monotonic()
    socks = slow_header_sockets(port, count)
    connected = time.monotonic() - opened
    try:
        time.sleep(0.2)
        held = sum(still_open(s) for s in socks)
        print(f"(b) {count} slow-header sockets ({held} held open by the server):")
        _latency("meanwhile", url, 200)
        _, peak = rss_kb(pid)
        print(f"    peak RSS idle + {(peak - idle) / 1024:.0f} MB")
        left = count
        while left and time.monotonic() < opened + connected + timeout + 5:
            time.sleep(0.1)
            left = sum(still_open(s) for s in socks)
        print(
            f"    {count - left} of {count} closed by the server within "
            f"{time.monotonic() - opened:.1f} s of the first connect (header timeout "
            f"{timeout:g} s; connecting them all took {connected:.1f} s)"
        )
    finally:
        for s in socks:
            s.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--sockets", type=int, default=500)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_server(
            Path(tmp) / "home",
            OTTO_LOCAL_ORCHESTRATOR="0",
            OTTO_HEADER_TIMEOUT=str(args.header_timeout),
        ) as server,
    ):
        pid = server.process.pid
        idle, _ = rss_kb(pid)
        print(f"baseline: idle server RSS {idle / 1024:.0f} MB")
        _latency("baseline", server.url, 200)
        huge_bodies(server.url, pid, args.clients, args.size_mb * MB)
        slow_heads(server.url, pid, args.sockets, args.header_timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
