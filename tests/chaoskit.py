"""The chaos harness, shared by `bench/chaos.py` (an hour) and `tests/chaos` (a minute or
two): a production layout killed at random, then the verdict on what it did.

The layout (`System`): two `otto server` replicas on one PostgreSQL database, none
running an orchestrator of its own, the object store on an S3 server (moto), and two
remote orchestrators (`--server URL1,URL2`, unsandboxed steps). A `Driver` submits
pipelines of mixed shapes (`shapes`) to either replica, each with an Idempotency-Key
(retried on the other replica while one is down), and approves their gates; a `Chaos`
thread kill -9s a server replica, an orchestrator or an agent every few seconds and
restarts it (an agent is not restarted: its context's lease runs out); `Subscriber`s
follow `/v1/events`, hopping between replicas with `Last-Event-ID`. Every context's
steps append `<pipeline> <context> <attempt>` to a ledger file outside the workspaces.

`verdict` checks, once every run has ended and every process is alive: every
acknowledged run exists and is Complete; the transition log's seq has no gap and no
duplicate; `otto replay --all` finds every run consistent; no context attempt ran its
steps twice (the ledger, and the claims in the log); an attempt lost with its agent
(`Error agent_lost`) was retried exactly where its stage's `retry_on` asks; and no
subscriber missed or repeated an event.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import http.client
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg

from motokit import CREDENTIALS
from otto.model import RETRY_CAUSES, retry_causes
from otto.sse import SseParser
from serverkit import (
    UNSANDBOXED,
    Server,
    connected,
    free_port,
    start_orchestrator,
    start_server,
    stop_orchestrator,
    stop_server,
    wait_for,
)

KINDS = ("server", "orchestrator", "agent")
ORCHESTRATORS = ("chaos-1", "chaos-2")
APPROVER = "chaos-driver"
# A step's record of itself, from what its work order told it (one `write`: O_APPEND
# keeps lines from many steps whole).
LEDGER_LINE = 'echo "$OTTO_PIPELINE $OTTO_CONTEXT $OTTO_ATTEMPT" >> {ledger}'


def shapes(record: str) -> dict[str, str]:
    """Ottofiles by shape name; `record` is the shell command that writes the ledger."""
    mark, work = f"sh '{record}'", "sh 'sleep 1'"

    def stage(name: str, *extra: str) -> str:
        return f"stage {{ name = '{name}' {' '.join(extra)} steps {{ {mark} {work} }} }}"

    failing = f"stage {{ name = 'broken' steps {{ {mark} sh 'exit 3' }} }}"
    gate = "gates { enter { input 'Go on?' } }"
    no_retry = "retry_on = ''"  # a lost attempt is not retried
    return {
        "linear": f"pipeline {{ {stage('build')} {stage('test')} }}",
        "parallel": f"pipeline {{ parallel {{ {stage('a')} {stage('b')} {stage('c')} }} }}",
        "fanout": f"pipeline {{ fanout {{ {stage('x')} {stage('y')} }} }}",
        "failing": f"pipeline {{ {failing} {stage('never')} }}",
        "approval": f"pipeline {{ {stage('build')} {stage('deploy', gate)} }}",
        "no-retry": f"pipeline {{ {stage('once', no_retry)} }}",
    }


@dataclass(frozen=True)
class Kill:
    kind: str
    at: float  # Unix time
    target: str
    pipeline: str | None = None  # an agent's run; None: every run in flight
    context: str | None = None  # an agent's context


# -- the system under test -----------------------------------------------------------


class System:
    """The replicas and orchestrators, each restartable on its port / under its name."""

    def __init__(self, root: Path, dsn: str, objects: str, lease_seconds: float) -> None:
        self.root, self.dsn = root, dsn
        self.ports = [free_port(), free_port()]
        self.urls = [f"http://127.0.0.1:{port}" for port in self.ports]
        self.servers: list[Server | None] = [None, None]
        self.orchestrators: dict[str, subprocess.Popen[bytes]] = {}
        self.marker = {"OTTO_CHAOS_RUN": str(root)}  # tells this run's agents apart
        self.env = {
            **UNSANDBOXED,
            "OTTO_OBJECTS": objects,
            "OTTO_LOCAL_ORCHESTRATOR": "0",
            "OTTO_LEASE_SECONDS": str(lease_seconds),
            "OTTO_ORCHESTRATOR_GRACE": "3",
        }
        self.lock = threading.Lock()

    def start(self) -> None:
        for index in range(len(self.ports)):
            self.start_server(index)
        for name in ORCHESTRATORS:
            self.start_orchestrator(name)
        with httpx.Client(base_url=self.urls[0], timeout=5) as client:
            for name in ORCHESTRATORS:
                wait_for(functools.partial(connected, client, name), 30, f"orchestrator {name}")

    def start_server(self, index: int) -> None:
        home = self.root / f"replica-{index}"
        home.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + 60
        while True:  # the port may linger a moment after a kill
            try:
                self.servers[index] = start_server(home, self.ports[index], self.dsn, **self.env)
                return
            except RuntimeError as exc:
                if time.monotonic() > deadline:
                    log = self.root / f"server-{self.ports[index]}.log"
                    raise RuntimeError(f"replica {index} would not restart ({log})") from exc
                time.sleep(0.5)

    def start_orchestrator(self, name: str) -> None:
        self.orchestrators[name] = start_orchestrator(
            ",".join(self.urls),
            name,
            self.root / "orchestrators",
            grace=2.0,
            extra=["--runtime", "none"],
            environ={**self.env, **self.marker},
        )

    def live_urls(self) -> list[str]:
        return [
            url
            for url, server in zip(self.urls, self.servers, strict=True)
            if server is not None and server.process.poll() is None
        ]

    def stop(self) -> None:
        for process in self.orchestrators.values():
            stop_orchestrator(process)
        for server in self.servers:
            if server is not None:
                stop_server(server)

    # -- kills ---------------------------------------------------------------------
    def kill(self, kind: str, rng: random.Random) -> Kill | None:
        """kill -9 one process of `kind` and restart it (after a second or two, as a
        supervisor would); None when there was none to kill (no agent running)."""
        with self.lock:
            if kind == "server":
                return self._kill_server(rng)
            if kind == "orchestrator":
                return self._kill_orchestrator(rng)
            return self._kill_agent(rng)

    def _kill_server(self, rng: random.Random) -> Kill:
        index = rng.randrange(len(self.servers))
        server = self.servers[index]
        assert server is not None
        kill = Kill("server", time.time(), self.urls[index])
        stop_server(server, signal.SIGKILL)
        time.sleep(rng.uniform(0.5, 2.0))
        self.start_server(index)
        return kill

    def _kill_orchestrator(self, rng: random.Random) -> Kill:
        name = rng.choice(ORCHESTRATORS)
        process = self.orchestrators[name]
        kill = Kill("orchestrator", time.time(), name)
        process.kill()
        process.wait()
        time.sleep(rng.uniform(0.5, 2.0))
        self.start_orchestrator(name)
        return kill

    def _kill_agent(self, rng: random.Random) -> Kill | None:
        agents = self.agents()
        if not agents:
            return None
        pid, (pipeline, context) = rng.choice(sorted(agents.items()))
        kill = Kill("agent", time.time(), str(pid), pipeline, context)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        return kill

    def agents(self) -> dict[int, tuple[str, str]]:
        """This run's live agent processes (by their orchestrators' hold records), and
        the run and context each works for."""
        found = {}
        for record in (self.root / "orchestrators").glob("*/.agents/*/held.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                held = json.loads(record.read_text())
                pid = int(held["pid"])
                if self._ours(pid):
                    found[pid] = (str(held["lot"]["pipeline"]), str(held["lot"]["context"]))
        return found

    def _ours(self, pid: int) -> bool:
        """An agent of this run still alive (not a reused PID of someone else's)."""
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        marker = f"OTTO_CHAOS_RUN={self.root}".encode()
        return marker in environ and state != "Z"


class Chaos(threading.Thread):
    """Kills something every `every` seconds (a random pause in that range) until told to
    stop: a random kind, or each kind in turn (`in_turn`, so a short run has them all)."""

    def __init__(
        self,
        system: System,
        rng: random.Random,
        every: tuple[float, float],
        in_turn: bool = False,
    ) -> None:
        super().__init__(name="chaos", daemon=True)
        self.system, self.rng, self.every, self.in_turn = system, rng, every, in_turn
        self.kills: list[Kill] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        turn = 0
        try:
            while not self.halt.wait(self.rng.uniform(*self.every)):
                kind = KINDS[turn % len(KINDS)] if self.in_turn else self.rng.choice(KINDS)
                kill = self._kill(kind)
                if kill is not None:
                    self.kills.append(kill)
                    turn += 1
        except BaseException as exc:  # reported by `stop`
            self.error = exc

    def _kill(self, kind: str) -> Kill | None:
        deadline = time.monotonic() + 5  # an agent may be between contexts
        while (kill := self.system.kill(kind, self.rng)) is None:
            if time.monotonic() > deadline or self.halt.wait(0.2):
                return None
        return kill

    def until(self, each: int, timeout: float) -> None:
        """Wait until every kind was killed `each` times (or `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.is_alive():
            if all(sum(k.kind == kind for k in self.kills) >= each for kind in KINDS):
                return
            time.sleep(0.5)

    def stop(self) -> None:
        self.halt.set()
        self.join()
        if self.error is not None:
            raise RuntimeError(f"the chaos thread failed: {self.error!r}") from self.error


# -- the driver ----------------------------------------------------------------------


class Driver:
    """Submits `count` pipelines over `seconds` (cycling through `ottofiles`) and approves
    every gate that waits; `acknowledged`: each run a replica answered with its uuid."""

    def __init__(self, system: System, ottofiles: dict[str, str], count: int, seconds: float):
        self.system, self.ottofiles, self.count, self.seconds = system, ottofiles, count, seconds
        self.acknowledged: dict[str, str] = {}  # uuid → shape
        self.approved: set[str] = set()
        self.halt = threading.Event()
        self.threads = [
            threading.Thread(target=self._submit_all, name="submit", daemon=True),
            threading.Thread(target=self._approve_all, name="approve", daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def submitted(self, timeout: float) -> None:
        self.threads[0].join(timeout)

    def stop(self) -> None:
        self.halt.set()
        for thread in self.threads:
            thread.join()

    def _submit_all(self) -> None:
        names = sorted(self.ottofiles)
        started = time.monotonic()
        for n in range(self.count):
            due = started + self.seconds * n / self.count
            if self.halt.wait(max(0.0, due - time.monotonic())):
                return
            shape = names[n % len(names)]
            uuid = self._submit(n, self.ottofiles[shape])
            if uuid is not None:
                self.acknowledged[uuid] = shape

    def _submit(self, n: int, ottofile: str) -> str | None:
        """Its uuid once a replica acknowledged it; a lost answer is asked again, of
        either replica, under the same Idempotency-Key."""
        headers = {"Idempotency-Key": f"chaos-{n}"}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not self.halt.is_set():
            for url in self.system.live_urls():
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                    answer = httpx.post(
                        f"{url}/v1/pipelines", json={"ottofile": ottofile}, headers=headers,
                        timeout=15,
                    )  # fmt: skip
                    if answer.status_code in (200, 201):
                        return str(answer.json()["uuid"])
            time.sleep(0.5)
        return None

    def _approve_all(self) -> None:
        while not self.halt.wait(1.0):
            for url in self.system.live_urls()[:1]:
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                    self._approve(url)

    def _approve(self, url: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            for run in list_runs(client, state="Running"):
                if run.get("waiting") and run["uuid"] in self.acknowledged:
                    detail = client.get(f"/v1/pipelines/{run['uuid']}").json()
                    for ctx in contexts_of(detail):
                        if ctx["state"] == "Waiting":
                            path = f"/v1/pipelines/{run['uuid']}/contexts/{ctx['name']}/approve"
                            if client.post(path, json={"by": APPROVER}).status_code == 200:
                                self.approved.add(ctx["uuid"])


def list_runs(client: httpx.Client, **filters: str) -> Iterator[dict[str, Any]]:
    cursor: str | None = None
    while True:
        params = {**filters, "limit": "500", **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/pipelines", params=params).raise_for_status().json()
        yield from page["pipelines"]
        cursor = page.get("next_cursor")
        if not cursor:
            return


def contexts_of(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for batch in run["batches"] for c in batch["contexts"]]


# -- the event stream's subscribers --------------------------------------------------


class Subscriber(threading.Thread):
    """Follows `/v1/events?{query}` from the start, raw: every event as the server sent
    it (no de-duplication here: that is what is checked). It moves to the other replica
    every `hop` seconds, and whenever its connection drops, with `Last-Event-ID`."""

    def __init__(self, system: System, query: str = "", hop: float = 7.0) -> None:
        super().__init__(name=f"subscriber {query or 'all'}", daemon=True)
        self.system, self.query, self.hop = system, query, hop
        self.seqs: list[int] = []  # every transition's, as it came
        self.cursor = 0  # where it resumes: the last seq it got, or the one a resync names
        self.reconnects = self.resyncs = 0
        self.halt = threading.Event()
        self._connection: http.client.HTTPConnection | None = None

    def run(self) -> None:
        turn = 0
        while not self.halt.is_set():
            urls = self.system.live_urls()
            if not urls:
                time.sleep(0.2)
                continue
            with contextlib.suppress(OSError, http.client.HTTPException):
                self._follow(urls[turn % len(urls)])
            turn += 1
            self.reconnects += 1

    def _follow(self, url: str) -> None:
        address = urlsplit(url)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
        self._connection = connection
        try:
            headers = {"Accept": "text/event-stream", "Last-Event-ID": str(self.cursor)}
            connection.request("GET", f"/v1/events?{self.query}", headers=headers)
            response = connection.getresponse()
            if response.status != 200:
                time.sleep(0.5)
                return
            self._read(response, time.monotonic() + self.hop)
        finally:
            connection.close()

    def _read(self, response: http.client.HTTPResponse, hop_at: float) -> None:
        parser = SseParser()
        while not self.halt.is_set() and time.monotonic() < hop_at:
            line = response.readline()
            if not line:
                return
            event = parser.feed(line.decode().rstrip("\r\n"))
            if event is None:
                continue
            if event.event == "resync":
                self.resyncs += 1
                self.cursor = max(self.cursor, int(json.loads(event.data)["after"]))
                return
            if event.event == "transition" and event.id is not None:
                self.seqs.append(int(event.id))
                self.cursor = int(event.id)

    def stop(self) -> None:
        self.halt.set()
        connection = self._connection
        if connection is not None and connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(2)
        self.join(10)


# -- the verdict ---------------------------------------------------------------------


@dataclass
class Verdict:
    pipelines: int = 0
    acknowledged: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    approved: int = 0  # gates the driver approved
    kills: Counter[str] = field(default_factory=Counter)
    lost: int = 0  # attempts ended `Error agent_lost`
    retried: int = 0  # automatic retries
    readopted: int = 0
    ledger_lines: int = 0  # attempts whose steps ran
    events: int = 0  # events the subscribers got
    reconnects: int = 0  # their reconnections with Last-Event-ID (hops, kills, resyncs)
    work_lost: int = 0  # lost attempts whose steps had run (their ledger line)
    max_recovery: float | None = None  # seconds from a kill to its runs moving again
    invariants: dict[str, int | None] = field(default_factory=dict)  # None: not checked
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(self.invariants.values())

    def table(self) -> str:
        recovery = "-" if self.max_recovery is None else f"{self.max_recovery:.1f} s"
        rows = [
            ("pipelines submitted / acknowledged", f"{self.pipelines} / {self.acknowledged}"),
            ("statuses", ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))),
            ("gates approved by the driver", str(self.approved)),
            ("kills", ", ".join(f"{k} {self.kills[k]}" for k in KINDS)),
            ("contexts lost (agent_lost) / retried", f"{self.lost} / {self.retried}"),
            ("agents re-adopted", str(self.readopted)),
            ("attempts that ran their steps (ledger lines)", str(self.ledger_lines)),
            ("events streamed / reconnections", f"{self.events} / {self.reconnects}"),
            ("lost attempts whose steps had run", str(self.work_lost)),
            ("max kill -> affected runs moving", recovery),
        ]
        rows += [
            (f"{name} (0 = holds)", "n/a" if count is None else str(count))
            for name, count in self.invariants.items()
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value}" for name, value in rows]
        lines.append("verdict".ljust(width) + "  " + ("PASS" if self.ok else "FAIL"))
        return "\n".join(lines + [f"  {p}" for p in self.problems[:20]])


@dataclass(frozen=True)
class Move:
    seq: int
    pipeline: str
    entity: str
    id: str
    to: str
    reason: str | None
    at: float
    data: dict[str, Any]


def read_log(dsn: str) -> list[Move]:
    query = "SELECT seq, pipeline, entity, id, to_state, reason, at, data FROM transitions"
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(query + " ORDER BY seq").fetchall()
    return [Move(*row[:7], json.loads(row[7]) if row[7] else {}) for row in rows]  # type: ignore[misc]


def seq_faults(moves: Sequence[Move]) -> list[str]:
    """Gaps and duplicates in the log's seq (it starts at 1)."""
    seqs = [m.seq for m in moves]
    problems = [f"seq {s} appears {n} times" for s, n in Counter(seqs).items() if n > 1]
    missing = set(range(1, max(seqs, default=0) + 1)) - set(seqs)
    problems += [f"seq {s} missing" for s in sorted(missing)]
    return problems


def unfinished(client: httpx.Client, acknowledged: dict[str, str]) -> list[str]:
    complete = {run["uuid"] for run in list_runs(client, state="Complete")}
    return [uuid for uuid in acknowledged if uuid not in complete]


def wait_finished(system: System, acknowledged: dict[str, str], timeout: float) -> list[str]:
    """Runs still not Complete after `timeout` seconds (they should all end)."""
    deadline = time.monotonic() + timeout
    while True:
        with httpx.Client(base_url=system.live_urls()[0], timeout=30) as client:
            left = unfinished(client, acknowledged)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(2)


def by_context(moves: Sequence[Move]) -> dict[str, list[Move]]:
    found: dict[str, list[Move]] = defaultdict(list)
    for move in moves:
        if move.entity == "context":
            found[move.id].append(move)
    return found


def lost(move: Move) -> bool:
    """An attempt that ended with its agent lost: its lease ran out (`agent_lost`), or its
    agent died without its final report (`agent_lost: its agent exited (-9) …`)."""
    return move.to == "Error" and (move.reason or "").partition(":")[0] == "agent_lost"


def retry_faults(contexts: dict[str, list[Move]], causes: dict[str, frozenset[str]]) -> list[str]:
    """A lost attempt retried where its stage's `retry_on` does not ask (or its one
    automatic retry is used up), or not retried where it does; an automatic retry after
    anything but a lost or unprovisioned attempt (a failing script is never retried)."""
    problems = []
    for context, moves in contexts.items():
        made = 0
        for before, move, after in zip([None, *moves], moves, [*moves[1:], None], strict=False):
            retried = after is not None and after.reason == "auto_retry"
            if lost(move):
                expected = "agent_lost" in causes.get(context, frozenset()) and made < 1
                if retried != expected:
                    problems.append(f"context {context} seq {move.seq}: agent_lost, "
                                    f"retried {retried}, retry asked {expected}")  # fmt: skip
                made += retried
            elif move.reason == "auto_retry" and not (
                before is not None
                and before.to == "Error"
                and (before.reason or "").startswith(RETRY_CAUSES)
            ):
                problems.append(f"context {context} seq {move.seq}: retried after {before}")
    return problems


def loss_faults(moves: Sequence[Move], kills: Sequence[Kill]) -> list[str]:
    """Attempts that ended `Error` for another reason than a lost agent or a failed
    provisioning: nothing else in these runs errs, so a kill -9 shown otherwise."""
    killed = {k.context: k.target for k in kills if k.context}
    return [
        f"context {m.id} seq {m.seq}: Error {m.reason!r}"
        + (f" (its agent {killed[m.id]} was killed)" if m.id in killed else "")
        for m in moves
        if m.entity == "context" and m.to == "Error"
        and not (m.reason or "").startswith(RETRY_CAUSES)
    ]  # fmt: skip


def attempt_faults(contexts: dict[str, list[Move]], ledger: Path) -> tuple[list[str], int]:
    """Attempts whose steps ran twice (a ledger line twice) or that were claimed twice;
    and how many lost attempts had run their steps (work thrown away)."""
    lines = Counter(ledger.read_text().splitlines()) if ledger.exists() else Counter()
    problems = [f"ledger: {line!r} written {n} times" for line, n in lines.items() if n > 1]
    ran = {tuple(line.split()[1:]) for line in lines}
    work_lost = 0
    for context, moves in contexts.items():
        claims = Counter(m.data.get("attempt") for m in moves if m.reason == "claimed")
        problems += [
            f"context {context} attempt {a} claimed {n} times" for a, n in claims.items() if n > 1
        ]
        attempt = 0
        for move in moves:
            attempt = (
                int(move.data.get("attempt", attempt)) if move.reason == "claimed" else attempt
            )
            if lost(move):
                work_lost += (context, str(attempt)) in ran
    return problems, work_lost


def stream_faults(name: str, query: str, seqs: Sequence[int], moves: Sequence[Move]) -> list[str]:
    """What a subscriber to `/v1/events?{query}` that got `seqs` missed, got twice, or got
    out of order."""
    wanted = [m.seq for m in moves if "entity=pipeline" not in query or m.entity == "pipeline"]
    got = Counter(seqs)
    problems = [f"{name}: seq {s} {n} times" for s, n in got.items() if n > 1]
    problems += [f"{name}: missed seq {s}" for s in wanted if s not in got]
    problems += [f"{name}: out of order at {b}" for a, b in itertools.pairwise(seqs) if b <= a]
    return problems


def recovery(kills: Sequence[Kill], moves: Sequence[Move]) -> float | None:
    """The longest time from a kill to every run it found in flight (an agent's: its own
    run) making its next transition."""
    times: dict[str, list[float]] = defaultdict(list)
    for move in moves:
        times[move.pipeline].append(move.at)
    for at in times.values():
        at.sort()
    worst: float | None = None
    for kill in kills:
        in_flight = [kill.pipeline] if kill.pipeline else [
            p for p, at in times.items() if at[0] < kill.at < at[-1]
        ]  # fmt: skip
        for pipeline in in_flight:
            at = times.get(pipeline, [])
            following = bisect.bisect_left(at, kill.at)
            if following < len(at):
                worst = max(worst or 0.0, at[following] - kill.at)
    return worst


def replay_all(url: str) -> tuple[int | None, list[str]]:
    """`otto replay --all`: inconsistent runs (None: no such command yet) and what it said."""
    answer = subprocess.run(
        [sys.executable, "-m", "otto.cli", "replay", "--all", "--server", url, "--json"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if answer.returncode not in (0, 1):
        if "No such command" in answer.stderr:
            return None, []
        return 1, [f"otto replay --all exited {answer.returncode}: {answer.stderr[-500:]}"]
    lines = [json.loads(line) for line in answer.stdout.splitlines() if line.strip()]
    summary = lines[-1] if lines else {"inconsistent": 1}
    return int(summary["inconsistent"]), [
        f"replay: {json.dumps(line)[:300]}" for line in lines[:-1]
    ]


def readoptions(system: System) -> int:
    logs = (system.root / "orchestrators").glob("orchestrator-*.log")
    return sum(log.read_text(errors="replace").count("re-adopted the agent") for log in logs)


def verdict(
    system: System,
    driver: Driver,
    chaos: Chaos,
    subscribers: Sequence[Subscriber],
    ledger: Path,
    submitted: int,
    finish_timeout: float = 300,
) -> Verdict:
    """Every check, once the chaos has stopped: waits (up to `finish_timeout`) for every
    acknowledged run to end and for the subscribers to catch up first."""
    result = Verdict(pipelines=submitted, acknowledged=len(driver.acknowledged))
    result.kills = Counter(k.kind for k in chaos.kills)
    left = wait_finished(system, driver.acknowledged, finish_timeout)
    driver.stop()
    url = system.live_urls()[0]
    with httpx.Client(base_url=url, timeout=30) as client:
        runs = {u: client.get(f"/v1/pipelines/{u}") for u in driver.acknowledged}
    found = {u: r.json() for u, r in runs.items() if r.status_code == 200}
    result.statuses = Counter(f"{driver.acknowledged[u]}:{r['status']}" for u, r in found.items())
    incomplete = [u for u in driver.acknowledged if u not in found or u in left]
    result.problems += [f"run {u} not Complete" for u in incomplete]
    moves = read_log(system.dsn)
    for subscriber in subscribers:
        wait_for_catch_up(subscriber, moves)
        subscriber.stop()
    contexts = by_context(moves)
    causes = {
        c["uuid"]: retry_causes(c["properties"])
        for run in found.values()
        for batch in run["model"]["batches"]
        for c in batch["contexts"]
    }
    seqs = seq_faults(moves)
    retries = retry_faults(contexts, causes)
    losses = loss_faults(moves, chaos.kills)
    twice, result.work_lost = attempt_faults(contexts, ledger)
    events = [p for s in subscribers for p in stream_faults(s.name, s.query, s.seqs, moves)]
    replayed, said = replay_all(url)
    result.invariants = {
        "acknowledged runs missing or not Complete": len(incomplete),
        "transition seq gaps and duplicates": len(seqs),
        "otto replay --all inconsistent runs": replayed,
        "context attempts that ran twice": len(twice),
        "attempts lost but not ended agent_lost": len(losses),
        "agent_lost retried against retry_on": len(retries),
        "events missed or repeated by subscribers": len(events),
    }
    result.problems += seqs + said + twice + losses + retries + events
    result.lost = sum(lost(m) for m in moves if m.entity == "context")
    result.retried = sum(m.reason == "auto_retry" for m in moves if m.entity == "context")
    result.readopted = readoptions(system)
    result.approved = len(driver.approved)
    result.ledger_lines = len(ledger.read_text().splitlines()) if ledger.exists() else 0
    result.events = sum(len(s.seqs) for s in subscribers)
    result.reconnects = sum(s.reconnects for s in subscribers)
    result.max_recovery = recovery(chaos.kills, moves)
    return result


def wait_for_catch_up(subscriber: Subscriber, moves: Sequence[Move], timeout: float = 30) -> None:
    wanted = [m.seq for m in moves if "entity=pipeline" not in subscriber.query or
              m.entity == "pipeline"]  # fmt: skip
    deadline = time.monotonic() + timeout
    while wanted and subscriber.cursor < wanted[-1] and time.monotonic() < deadline:
        time.sleep(0.2)


# -- one whole run -------------------------------------------------------------------


def s3_objects(endpoint: str, bucket: str) -> str:
    """The object-store URL of `bucket` on the S3 server at `endpoint` (moto's keys)."""
    keys = f"access_key={CREDENTIALS['AWS_ACCESS_KEY_ID']}"
    keys += f"&secret_key={CREDENTIALS['AWS_SECRET_ACCESS_KEY']}"
    return f"s3://{bucket}/chaos?endpoint={endpoint}&{keys}"


@dataclass
class Plan:
    pipelines: int
    seconds: float  # how long the chaos lasts (pipelines are submitted over 80 % of it)
    every: tuple[float, float] = (5.0, 15.0)
    in_turn: bool = False
    seed: int = 0
    # Longer than an orchestrator takes to restart on a busy machine, so that its agents
    # are re-adopted rather than lost.
    lease_seconds: float = 15.0
    min_kills: int = 0  # of each kind: the chaos goes on (up to half as long again) till then


def run(root: Path, dsn: str, objects: str, plan: Plan) -> Verdict:
    """Start the layout, drive it through `plan` under chaos, stop the chaos, judge."""
    rng = random.Random(plan.seed)
    ledger = root / "ledger"
    system = System(root, dsn, objects, plan.lease_seconds)
    record = LEDGER_LINE.format(ledger=ledger)
    system.start()
    try:
        subscribers = [Subscriber(system), Subscriber(system, "entity=pipeline", hop=11.0)]
        for subscriber in subscribers:
            subscriber.start()
        driver = Driver(system, shapes(record), plan.pipelines, plan.seconds * 0.8)
        chaos = Chaos(system, rng, plan.every, plan.in_turn)
        driver.start()
        chaos.start()
        time.sleep(plan.seconds)
        chaos.until(plan.min_kills, timeout=plan.seconds / 2)
        driver.submitted(timeout=120)
        chaos.stop()
        return verdict(system, driver, chaos, subscribers, ledger, plan.pipelines)
    finally:
        system.stop()
