"""The janitor's throughput: objects removed per second while 50 pipelines/s run.

A real `otto server` (started here) first runs `--backlog` pipelines of a few objects
each (a context log, two step logs, an artifact) under the default retention. It is then
restarted on the same state with `retention_days` of one second, so that the whole
backlog is due, and the janitor frees it in its small steps while pipelines are submitted
at `--rate` per second for `--seconds`. Printed: objects (and runs) removed per second
during that window, as the janitor's log lines say, the pipelines per second that ran
meanwhile, and the baseline measured in the same run: deleting the same number of
objects from the same kind of store in a bare loop, with nothing else running.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from benchkit import JSON_HEADERS, Completions, submit_at_once  # noqa: E402
from otto.objectstore import open_store  # noqa: E402
from serverkit import UNSANDBOXED, running_server  # noqa: E402

WITH_OBJECTS = (
    "pipeline { stage { name = 'Build' steps {"
    " sh 'echo built > out.txt' sh 'echo tested' archive artifacts: 'out.txt', name: 'out' } } }"
)
TRIVIAL = "pipeline { steps { sh 'true' } }"
FREED = re.compile(r"retention: freed .*?runs=(\d+) objects=(\d+)")


def bare_deletes(count: int) -> float:
    """Objects deleted per second from a filesystem store, in a bare loop."""
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(str(Path(tmp) / "objects"))
        keys = [f"run-{i // 4}/ctx/{i % 4}.log" for i in range(count)]
        for key in keys:
            store.put(key, b"x" * 64)
        started = time.perf_counter()
        for key in keys:
            store.delete(key)
        return count / (time.perf_counter() - started)


class FreedCounter:
    """Tails the server's log and counts what the janitor says it freed, when it says it."""

    def __init__(self, log: Path) -> None:
        self.log, self.events = log, []  # (time, runs, objects)
        self.offset = log.stat().st_size if log.exists() else 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._tail, daemon=True)
        self.thread.start()

    def _tail(self) -> None:
        while not self.stopping.wait(0.05):
            with open(self.log, "rb") as file:
                file.seek(self.offset)
                data = file.read()
            complete = data[: data.rfind(b"\n") + 1]
            self.offset += len(complete)
            now = time.perf_counter()
            for match in FREED.finditer(complete.decode(errors="replace")):
                self.events.append((now, int(match[1]), int(match[2])))

    def between(self, start: float, end: float) -> tuple[int, int]:
        chosen = [(r, o) for t, r, o in self.events if start <= t <= end]
        return sum(r for r, _ in chosen), sum(o for _, o in chosen)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()


def submit_at_rate(url: str, rate: float, seconds: float, threads: int = 4) -> list[str]:
    """Submit trivial pipelines at `rate` per second for `seconds` from `threads`
    connections (the standard library's client: little CPU taken from the server)."""
    uuids: list[str] = []
    lock = threading.Lock()
    body = json.dumps({"ottofile": TRIVIAL}).encode()
    address = urlsplit(url)
    started = time.perf_counter()
    total = int(rate * seconds)

    def submit(first: int) -> None:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        try:
            for n in range(first, total, threads):
                time.sleep(max(0.0, n / rate - (time.perf_counter() - started)))
                connection.request("POST", "/v1/pipelines", body, JSON_HEADERS)
                uuid = json.loads(connection.getresponse().read())["uuid"]
                with lock:
                    uuids.append(uuid)
        finally:
            connection.close()

    submitters = [threading.Thread(target=submit, args=(i,)) for i in range(threads)]
    for t in submitters:
        t.start()
    for t in submitters:
        t.join()
    return uuids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backlog", type=int, default=600)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        with running_server(home, **UNSANDBOXED) as server:
            completions = Completions(server.url)
            backlog = submit_at_once(server.url, WITH_OBJECTS, args.backlog)
            completions.wait(backlog, timeout=600)
        objects = open_store(str(home / "objects"))
        stored = sum(len(objects.list(f"{u}/")) for u in backlog)
        baseline = bare_deletes(stored)
        due = {**UNSANDBOXED, "OTTO_RETENTION_DAYS": str(1 / 86400), "OTTO_JANITOR_INTERVAL": "1"}
        with running_server(home, **due) as server:
            log = next(home.parent.glob(f"server-{server.url.rsplit(':', 1)[1]}.log"))
            counter = FreedCounter(log)
            completions = Completions(server.url)
            started = time.perf_counter()
            load = submit_at_rate(server.url, args.rate, args.seconds)
            ended = time.perf_counter()
            completions.wait(load, timeout=120)
            ran = sum(1 for u in load if completions.done[u] <= ended + 1)
            counter.stop()
            runs, freed = counter.between(started, ended)
            left = sum(len(objects.list(f"{u}/")) for u in backlog)
        window = ended - started
        print(
            f"janitor: {freed} objects of {runs} runs removed in {window:.1f} s = "
            f"{freed / window:.0f} objects/s ({runs / window:.0f} runs/s), while "
            f"{len(load)} pipelines were submitted at {len(load) / window:.0f}/s "
            f"({ran} complete within the window + 1 s); backlog {stored} objects, "
            f"{left} left after the window"
        )
        print(f"    baseline, bare deletes from a filesystem store: {baseline:.0f} objects/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
