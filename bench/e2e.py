"""Whole runs through a real `otto server` (started here): latency and throughput.

(a) latency of one trivial pipeline (`sh 'true'`), from submit to Pipeline
Complete, p50 and p95 over 50 runs one after another; (b) throughput: 200
such pipelines submitted at once, pipelines completed per second; and, in the
same run, the floors: the bare cost of spawning `sh -c true` from Python, and
the bare throughput of a process per context (a fork running `sh -c true`, as
many at once as the local orchestrator runs), the baseline (b) is a ratio of.
Targets on a 2-core machine: p50 <= 50 ms, >= 100 pipelines/s, server RSS
<= 200 MB after the run.

The machine is shared: compare runs by their ratio to the baseline, and by the
CPU per pipeline printed with (b). On ext4 without a journal, files removed in
the last minutes slow down creating new ones (the allocator skips their inodes):
a run right after another one (which removed its thousands of files) is slower.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from benchkit import Completions, submit_at_once  # noqa: E402
from serverkit import running_server  # noqa: E402

TRIVIAL = "pipeline { steps { sh 'true' } }"


def spawn_floor(count: int = 200) -> float:
    started = time.perf_counter()
    for _ in range(count):
        subprocess.run(["sh", "-c", "true"], check=True)
    return (time.perf_counter() - started) / count


def bare_throughput(count: int = 200, concurrency: int = 2 * (os.cpu_count() or 1)) -> float:
    """Contexts per second, best of three, with nothing but a process per context running
    `sh -c true`, `concurrency` at once (the local orchestrator's default). Run while this
    process has no other child and no other thread: it forks, and waits for any child."""
    rounds = []
    for _ in range(3):
        started = time.perf_counter()
        running = 0
        for _ in range(count):
            if running == concurrency:
                os.wait()
                running -= 1
            if os.fork() == 0:
                os._exit(subprocess.run(["sh", "-c", "true"], check=False).returncode)
            running += 1
        while running:
            os.wait()
            running -= 1
        rounds.append(count / (time.perf_counter() - started))
    return max(rounds)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(this process's CPU seconds, its reaped descendants'), user + system."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    tick = os.sysconf("SC_CLK_TCK")
    return (utime + stime) / tick, (cutime + cstime) / tick


def zygote_of(server: int) -> int:
    for task in Path(f"/proc/{server}/task").iterdir():  # the thread that forked it counts
        for child in (task / "children").read_text().split():
            if b"otto.agent.zygote" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    raise RuntimeError("no agent zygote under the server")


class CpuMeter:
    """CPU time of the server, its agent zygote, the agents (with their steps) and this
    client, between `__init__` and `per()`: figures that a busy machine does not skew."""

    def __init__(self, server: int) -> None:
        self.server, self.zygote = server, zygote_of(server)
        self.start = self._sample()

    def _sample(self) -> tuple[float, float, float, float]:
        server, _ = cpu_seconds(self.server)
        zygote, agents = cpu_seconds(self.zygote)
        me = resource.getrusage(resource.RUSAGE_SELF)
        return server, zygote, agents, me.ru_utime + me.ru_stime

    def per(self, count: int) -> str:
        now = self._sample()
        spent = ((b - a) * 1000 / count for a, b in zip(self.start, now, strict=True))
        server, zygote, agents, client = spent
        return (
            f"CPU per pipeline: server {server:.1f} ms, zygote {zygote:.1f} ms, "
            f"agents+steps {agents:.1f} ms (total {server + zygote + agents:.1f} ms); "
            f"this client {client:.1f} ms"
        )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--burst", type=int, default=200)
    args = parser.parse_args()
    floor = spawn_floor()
    baseline = bare_throughput()
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp) / "home") as server:
        completions = Completions(server.url)
        client = httpx.Client(base_url=server.url, timeout=30)
        for _ in range(3):  # warm up: agent pool, caches
            uuid = client.post("/v1/pipelines", json={"ottofile": TRIVIAL}).json()["uuid"]
            completions.wait([uuid])
        latencies = []
        for _ in range(args.runs):
            started = time.perf_counter()
            uuid = client.post("/v1/pipelines", json={"ottofile": TRIVIAL}).json()["uuid"]
            completions.wait([uuid])
            latencies.append(completions.done[uuid] - started)
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p95 = latencies[int(len(latencies) * 0.95) - 1] * 1000
        print(f"floor     bare `sh -c true` spawn from Python: {floor * 1000:.2f} ms")
        print(
            f"(a) latency submit -> Complete over {args.runs} runs: p50 {p50:.1f} ms, "
            f"p95 {p95:.1f} ms (target p50 <= 50 ms)"
        )

        meter = CpuMeter(server.process.pid)
        started = time.perf_counter()
        uuids = submit_at_once(server.url, TRIVIAL, args.burst)
        completions.wait(uuids, timeout=600)
        elapsed = max(completions.done[u] for u in uuids) - started
        cpu = meter.per(len(uuids))
        failed = sum(client.get(f"/v1/pipelines/{u}").json()["status"] != "Success" for u in uuids)
        print(
            f"(b) throughput: {len(uuids)} pipelines in {elapsed:.2f} s = "
            f"{len(uuids) / elapsed:.1f} pipelines/s, {failed} not Success "
            f"(target >= 100/s)"
        )
        print(f"    {cpu}")
        print(
            f"    baseline, a bare process per context: {baseline:.0f}/s; "
            f"Otto runs at {len(uuids) / elapsed / baseline:.0%} of it"
        )
        print(f"server RSS after the run: {rss_mb(server.process.pid):.0f} MB (target <= 200 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
