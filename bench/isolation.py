"""What isolating steps costs: the host sandbox and containers, through a real
`otto server` (started here), each figure against a baseline measured in the same run.

(a) the host sandbox: 200 trivial one-context pipelines (`sh 'true'`) submitted at once
    to a server with OTTO_SANDBOX=bubblewrap, and to one with OTTO_SANDBOX=none, in
    interleaved rounds (a fresh server each, the order alternating), best of --rounds:
    throughput (target >= 0.8x unsandboxed) and p50 latency of single runs one after
    another, submit to Complete (target <= 1.5x unsandboxed). CPU per pipeline is
    printed with each: the figure a busy machine does not skew.
(b) containers: 20 one-context pipelines with a stage `image = TEST_IMAGE` and one step
    `sh 'true'`, submitted at once, wall time to the last Complete, against 20 bare
    `podman run --rm IMAGE true` with the same engine and run arguments, as many at once
    as the server runs contexts (--concurrency, the server's default 2 x cores); best of
    --rounds, interleaved. Target: <= 1.3x the bare podman time.
(c) per step in a warm container: one context of 200 `sh 'true'` steps in the image,
    from the first step's start to the last step's end (the run's step timestamps),
    against 200 `podman exec CONTAINER true` one after another on a container started
    here. Target: <= 1.3x.

Where the time goes, printed under each part: (a) the step's own duration by the agent's
timestamps, CPU per pipeline (and the throughput ratio it implies on a CPU-bound
machine), and the step's command (`sh -e -c true`) bare and under bwrap with Otto's
arguments, started by `subprocess.run` and by the agent's `run_process` (which after
the exit makes sure the process group is gone, then drains the output: its stalls show
there); (b) the contexts' provisioning, step and release times by the agent's
timestamps, and each engine command the agent runs for a context (`run --detach --rm
--pull missing`, `exec` with the step's `--workdir`/`--env` arguments; none to end it:
the container ends when the agent closes its lifeline, and the engine removes it) timed
bare, and the machine's CPU per `run --rm` and per `exec`: the floor of (b) where the
machine is CPU-bound, since a context needs a container's life and an exec per step;
(c) per-step medians, and the time between steps. The (c) baseline brackets Otto's run:
half of the execs before it, half after.

This machine's container quirks are settings, as for the tests (tests/isolationkit.py):
OTTO_CONTAINER_RUNTIME=runc OTTO_CONTAINER_ARGS='--ulimit nofile=1024:1024 --ulimit
nproc=4096:4096'. A part whose tools are missing (bwrap, podman, the image, which
tests/images/build-test-image.sh builds) is skipped, saying why. Everything the bench
starts is stopped and removed at the end: servers, containers, temp dirs.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from benchkit import Completions, submit_at_once  # noqa: E402
from isolationkit import TEST_IMAGE, container_engine_args, container_run_args  # noqa: E402
from otto.agent.process import Interrupter, run_process  # noqa: E402
from otto.isolation import Bubblewrap, Command, Mounts, SandboxSpec, bubblewrap  # noqa: E402
from serverkit import Server, running_server  # noqa: E402

TRIVIAL = "pipeline { steps { sh 'true' } }"
# Succeeds only inside the host sandbox (bubblewrap's `--hostname otto-sandbox`).
IN_SANDBOX = "pipeline { steps { sh 'test \"$(cat /proc/sys/kernel/hostname)\" = otto-sandbox' } }"
BENCH_LABEL = f"otto.bench={os.getpid()}-{uuidlib.uuid4().hex[:8]}"


def in_image(steps: int) -> str:
    body = " ".join(["sh 'true'"] * steps)
    return f"pipeline {{ stage {{ name = 'c' image = '{TEST_IMAGE}' steps {{ {body} }} }} }}"


# -- following a server -------------------------------------------------------------------


class Bench:
    """A server under test: submit, wait, inspect."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.client = httpx.Client(base_url=server.url, timeout=60)
        self.completions = Completions(server.url)

    def submit(self, ottofile: str) -> str:
        answer = self.client.post("/v1/pipelines", json={"ottofile": ottofile})
        answer.raise_for_status()
        return str(answer.json()["uuid"])

    def run(self, ottofile: str, timeout: float = 120) -> dict[str, Any]:
        uuid = self.submit(ottofile)
        self.completions.wait([uuid], timeout)
        return dict(self.client.get(f"/v1/pipelines/{uuid}").json())

    def burst(self, ottofile: str, count: int, threads: int = 8) -> tuple[list[str], float]:
        """`count` pipelines submitted at once; (their uuids, seconds from the first
        submit to the last Complete)."""
        started = time.perf_counter()
        uuids = submit_at_once(self.server.url, ottofile, count, threads)
        self.completions.wait(uuids, timeout=600)
        return uuids, max(self.completions.done[u] for u in uuids) - started

    def latencies(self, ottofile: str, count: int) -> dict[str, float]:
        """Runs one after another: seconds from submit to Complete, by uuid."""
        found = {}
        for _ in range(count):
            started = time.perf_counter()
            uuid = self.submit(ottofile)
            self.completions.wait([uuid])
            found[uuid] = self.completions.done[uuid] - started
        return found

    def step_seconds(self, uuid: str) -> list[float]:
        """How long each step of the run took, by the agent's timestamps."""
        run = self.client.get(f"/v1/pipelines/{uuid}").json()
        return [when(s["finished_at"]) - when(s["started_at"]) for s in steps_of(run)]

    def not_success(self, uuids: list[str]) -> int:
        return sum(
            self.client.get(f"/v1/pipelines/{u}").json()["status"] != "Success" for u in uuids
        )

    def close(self) -> None:
        self.client.close()


@contextlib.contextmanager
def bench_server(tmp: Path, name: str, **env: str) -> Iterator[Bench]:
    with running_server(tmp / name / "home", **env) as server:
        bench = Bench(server)
        try:
            yield bench
        finally:
            bench.close()


def cpu_of_tree(pid: int) -> float:
    """CPU seconds (user + system) of `pid` and its reaped descendants, plus its live
    children's (the agent zygote, whose reaped children are the agents and their steps)."""

    def stat(p: int) -> tuple[float, float]:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
        tick = os.sysconf("SC_CLK_TCK")
        return (utime + stime) / tick, (cutime + cstime) / tick

    own, reaped = stat(pid)
    total = own + reaped
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread or a child may end meanwhile
            for child in (task / "children").read_text().split():
                total += sum(stat(int(child)))
    return total


def when(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def steps_of(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for b in run["batches"] for c in b["contexts"] for s in c["steps"]]


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}×" if base else "n/a"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# -- (a) the host sandbox -----------------------------------------------------------------


def part_a(tmp: Path, rounds: int, burst: int, runs: int) -> None:
    problem = bubblewrap.unavailable()
    if problem:
        print(f"(a) skipped: {problem}")
        return
    figures: dict[str, dict[str, list[float]]] = {
        mode: {"rate": [], "p50": [], "cpu": [], "step": []} for mode in ("bubblewrap", "none")
    }
    for r in range(rounds):
        order = ("none", "bubblewrap") if r % 2 == 0 else ("bubblewrap", "none")
        for mode in order:
            name = f"a-{r}-{mode}"
            with bench_server(tmp, name, OTTO_SANDBOX=mode, OTTO_CONTAINERS="off") as bench:
                check = bench.run(IN_SANDBOX)["status"]
                if check != ("Success" if mode == "bubblewrap" else "Failed"):
                    raise RuntimeError(f"OTTO_SANDBOX={mode}: the sandbox check ended {check}")
                for _ in range(3):  # warm up: agent pool, caches
                    bench.run(TRIVIAL)
                singles = bench.latencies(TRIVIAL, runs)
                lat = sorted(singles.values())
                p50, p95 = statistics.median(lat), lat[int(len(lat) * 0.95) - 1]
                cpu0 = cpu_of_tree(bench.server.process.pid)
                uuids, elapsed = bench.burst(TRIVIAL, burst)
                cpu = (cpu_of_tree(bench.server.process.pid) - cpu0) / len(uuids)
                # Afterwards, not to take CPU from the runs: how long the steps took, as
                # the agent timed them (spawn to exit), and how many stalled a second.
                single_steps = [bench.step_seconds(u)[0] for u in singles]
                burst_steps = [bench.step_seconds(u)[0] for u in uuids]
                failed = bench.not_success(uuids)
            shutil.rmtree(tmp / name, ignore_errors=True)
            rate = len(uuids) / elapsed
            step = statistics.median(single_steps)
            stalls = sum(d >= 0.9 for d in burst_steps + single_steps)
            for key, value in (("rate", rate), ("p50", p50), ("cpu", cpu), ("step", step)):
                figures[mode][key].append(value)
            print(
                f"    round {r + 1} {mode:10}: {len(uuids)} pipelines in {elapsed:.2f} s = "
                f"{rate:.1f}/s ({failed} not Success), CPU {cpu * 1000:.1f} ms/pipeline; "
                f"latency p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms; step p50 "
                f"{step * 1000:.1f} ms, slowest {max(burst_steps + single_steps) * 1000:.0f} ms"
                f" ({stalls} ≥ 0.9 s)"
            )
    box, bare = figures["bubblewrap"], figures["none"]
    rate_s, rate_n = max(box["rate"]), max(bare["rate"])
    p50_s, p50_n = min(box["p50"]), min(bare["p50"])
    cpu_s, cpu_n = min(box["cpu"]), min(bare["cpu"])
    step_s, step_n = min(box["step"]), min(bare["step"])
    print(
        f"(a) throughput sandboxed {rate_s:.1f}/s vs none {rate_n:.1f}/s: "
        f"{rate_s / rate_n:.2f}× (target ≥ 0.8×: {verdict(rate_s >= 0.8 * rate_n)})"
    )
    print(
        f"(a) p50 latency sandboxed {p50_s * 1000:.1f} ms vs none {p50_n * 1000:.1f} ms: "
        f"{ratio(p50_s, p50_n)} (target ≤ 1.5×: {verdict(p50_s <= 1.5 * p50_n)})"
    )
    print(
        f"    CPU per pipeline (server + agents + steps) sandboxed {cpu_s * 1000:.1f} ms "
        f"vs none {cpu_n * 1000:.1f} ms: +{(cpu_s - cpu_n) * 1000:.1f} ms; the step itself "
        f"(agent's timestamps, p50) {step_s * 1000:.1f} ms vs {step_n * 1000:.1f} ms: "
        f"+{(step_s - step_n) * 1000:.1f} ms"
    )
    print(
        f"    CPU-bound estimate of the throughput ratio (none's CPU per pipeline over the "
        f"sandbox's, which the machine's load does not skew): {cpu_n / cpu_s:.2f}×"
    )
    spawns(tmp)


def spawns(tmp: Path, count: int = 200) -> None:
    """Where a sandboxed step's time goes: the step's own command (`/bin/sh -e -c true`),
    bare and under bwrap with Otto's arguments, started by `subprocess.run` and by the
    agent's process runner (`run_process`, which then makes sure the process group is
    gone and drains the output)."""
    home, control = tmp / "spawn-home", tmp / "spawn-control"
    for directory in (home, control):
        directory.mkdir(exist_ok=True)
    step = ["/bin/sh", "-e", "-c", "true"]
    sandbox = Bubblewrap(SandboxSpec(kind="bubblewrap"))
    mounts = Mounts(writable=(tmp, home, control))
    interrupter = Interrupter()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}

    def command(boxed: bool) -> Command:
        if boxed:  # a fresh one each time: bwrap reads its arguments from a descriptor
            return sandbox.command(step, cwd=tmp, env=env, mounts=mounts)
        return Command(step, env)

    def spawn(boxed: bool) -> None:
        cmd = command(boxed)
        try:
            subprocess.run(cmd.argv, env=cmd.env, pass_fds=cmd.fds, check=True)
        finally:
            cmd.close()

    def run(boxed: bool) -> None:
        cmd = command(boxed)
        try:
            run_process(
                cmd.argv,
                cwd=tmp,
                env=cmd.env,
                output=lambda _: None,
                interrupter=interrupter,
                contained=boxed,
                pass_fds=cmd.fds,
            )
        finally:
            cmd.close()

    try:
        for name, boxed in (("bare", False), ("bwrap", True)):
            spawned = timed(lambda boxed=boxed: spawn(boxed), count)
            ran = sorted(times(lambda boxed=boxed: run(boxed), count))
            print(
                f"    {name:5} `sh -e -c true`: subprocess.run p50 {spawned * 1000:.2f} ms; "
                f"Otto's run_process p50 {statistics.median(ran) * 1000:.2f} ms, mean "
                f"{statistics.mean(ran) * 1000:.2f} ms, max {ran[-1] * 1000:.0f} ms, "
                f"{sum(t >= 0.045 for t in ran)} of {count} ≥ 45 ms, "
                f"{sum(t >= 0.9 for t in ran)} ≥ 0.9 s"
            )
    finally:
        interrupter.close()


def times(action: Callable[[], object], count: int) -> list[float]:
    found = []
    for _ in range(count):
        started = time.perf_counter()
        action()
        found.append(time.perf_counter() - started)
    return found


def timed(action: Callable[[], object], count: int) -> float:
    """Seconds per call, median of `count`."""
    return statistics.median(times(action, count))


# -- (b), (c) containers ------------------------------------------------------------------


def podman_problem() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman runc)"
    engine = container_engine_args()
    if subprocess.run([*engine, "image", "exists", TEST_IMAGE], capture_output=True).returncode:
        return f"the image {TEST_IMAGE} is missing: run tests/images/build-test-image.sh"
    ran = podman("run", "--rm", *container_run_args(), TEST_IMAGE, "true", check=False)
    if ran.returncode != 0:
        return (
            f"podman cannot run {TEST_IMAGE} here: {ran.stderr.strip()} (set OTTO_CONTAINER_ARGS, "
            "e.g. '--ulimit nofile=1024:1024 --ulimit nproc=4096:4096', OTTO_CONTAINER_RUNTIME)"
        )
    return None


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*container_engine_args(), *args], capture_output=True, text=True, check=check, timeout=300
    )


def bare_runs(count: int, concurrency: int) -> float:
    """Seconds for `count` bare `podman run --rm IMAGE true`, `concurrency` at once."""
    argv = ["run", "--rm", "--label", BENCH_LABEL, *container_run_args(), TEST_IMAGE, "true"]
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: podman(*argv), range(count)))
    return time.perf_counter() - started


@contextlib.contextmanager
def bench_container() -> Iterator[str]:
    name = f"otto-bench-{uuidlib.uuid4().hex[:12]}"
    podman(
        "run", "--detach", "--name", name, "--label", BENCH_LABEL, *container_run_args(),
        "--entrypoint", "sleep", TEST_IMAGE, "infinity",
    )  # fmt: skip
    try:
        yield name
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)


def otto_containers(tmp: Path) -> list[str]:
    """Containers (running or not) that the bench's servers own (their workspace roots
    are under `tmp`)."""
    found = podman("ps", "--all", "--format", "json", "--filter", "label=otto.owner")
    root = str(tmp)
    return [
        c["Id"]
        for c in json.loads(found.stdout or "[]")
        if str((c.get("Labels") or {}).get("otto.owner", "")).startswith(root)
    ]


def anatomy(workdir: Path) -> None:
    """Each engine command of a context's life, bare, as the agent gives it (median of 5)."""
    engine_run = [*container_run_args(), "--workdir", str(workdir)]
    names: list[str] = []

    def start() -> None:
        name = f"otto-bench-{uuidlib.uuid4().hex[:12]}"
        names.append(name)
        podman(
            "run", "--detach", "--rm", "--pull", "missing", "--name", name,
            "--label", BENCH_LABEL, *engine_run,
            "--volume", f"{workdir}:{workdir}", "--entrypoint", "sleep", TEST_IMAGE, "infinity",
        )  # fmt: skip

    run_d = timed(start, 5)
    for name in names:
        podman("kill", name)
    whole = timed(lambda: podman("run", "--rm", *container_run_args(), TEST_IMAGE, "true"), 5)
    with bench_container() as name:
        plain = timed(lambda: podman("exec", name, "true"), 10)
        env = {f"OTTO_BENCH_{i}": "x" for i in range(10)}
        args = ["exec", "--workdir", "/tmp", *(a for k in env for a in ("--env", k)), name, "true"]
        full = timed(
            lambda: subprocess.run(
                [*container_engine_args(), *args],
                env={**os.environ, **env},
                capture_output=True,
                check=True,
            ),
            10,
        )
    print(
        f"    bare engine commands (median): run --detach --rm {run_d * 1000:.0f} ms, exec "
        f"{plain * 1000:.0f} ms (with --workdir and 10 --env: {full * 1000:.0f} ms); Otto's "
        f"context = the sum of 2 = {(run_d + plain) * 1000:.0f} ms vs one run --rm "
        f"{whole * 1000:.0f} ms"
    )
    with bench_container() as name:
        exec_cpu = machine_cpu(lambda: podman("exec", name, "true"), 10)
    run_cpu = machine_cpu(lambda: podman("run", "--rm", *container_run_args(), TEST_IMAGE, "true"))
    print(
        f"    CPU of the whole machine (engine, conmon, runtime, cleanup): one run --rm "
        f"{run_cpu * 1000:.0f} ms, one exec {exec_cpu * 1000:.0f} ms: a context of one step "
        f"(a container's life + one exec) on a CPU-bound machine is at least "
        f"{(run_cpu + exec_cpu) / run_cpu:.2f}× one run --rm"
    )


def machine_cpu(action: Callable[[], object], count: int = 5, settle: float = 2.0) -> float:
    """CPU seconds of the whole machine per call (what the engine's helper processes do
    after a call returns included: `settle` seconds are waited, the idle load taken off)."""

    def busy() -> float:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")

    start = busy()
    time.sleep(settle)
    idle = busy() - start
    start = busy()
    for _ in range(count):
        action()
    time.sleep(settle)
    return max(0.0, busy() - start - idle) / count


def part_b(bench: Bench, tmp: Path, rounds: int, contexts: int, concurrency: int) -> None:
    otto: list[tuple[float, list[str]]] = []
    bare: list[float] = []
    for r in range(rounds):
        bare.append(bare_runs(contexts, concurrency))
        uuids, elapsed = bench.burst(in_image(1), contexts, threads=1)
        if failed := bench.not_success(uuids):
            raise RuntimeError(f"(b): {failed} of {len(uuids)} pipelines not Success")
        otto.append((elapsed, uuids))
        print(
            f"    round {r + 1}: Otto {elapsed:.2f} s, bare podman run {bare[-1]:.2f} s "
            f"({concurrency} at once)"
        )
    (best_o, uuids), best_b = min(otto), min(bare)
    print(
        f"(b) {contexts} containerised contexts through the server {best_o:.2f} s vs "
        f"{contexts} bare `podman run --rm` {best_b:.2f} s, {concurrency} at once: "
        f"{best_o / best_b:.2f}× (target ≤ 1.3×: {verdict(best_o <= 1.3 * best_b)})"
    )
    phases: dict[str, list[float]] = {"provision": [], "step": [], "release": []}
    for uuid in uuids:
        context = bench.client.get(f"/v1/pipelines/{uuid}").json()["batches"][0]["contexts"][0]
        start, step, end = context["started_at"], context["steps"][0], context["finished_at"]
        phases["provision"].append(when(step["started_at"]) - when(start))
        phases["step"].append(when(step["finished_at"]) - when(step["started_at"]))
        phases["release"].append(when(end) - when(step["finished_at"]))
    medians = {k: statistics.median(v) * 1000 for k, v in phases.items()}
    print(
        f"    per context and slot: Otto {best_o / contexts * concurrency * 1000:.0f} ms, bare "
        f"{best_b / contexts * concurrency * 1000:.0f} ms; Otto's context (p50, agent's "
        f"timestamps): provisioning {medians['provision']:.0f} ms (run --detach), step "
        f"{medians['step']:.0f} ms (exec), until reported {medians['release']:.0f} ms (the "
        f"container ends after the report)"
    )
    anatomy(tmp)


def part_c(bench: Bench, steps: int) -> None:
    # The baseline brackets Otto's run (half before, half after): the machine's load drifts
    # over the minute each takes.
    execs: list[float] = []
    with bench_container() as name:
        for _ in range(3):
            podman("exec", name, "true")
        execs += times(lambda: podman("exec", name, "true"), steps // 2)
        run = bench.run(in_image(steps), timeout=600)
        execs += times(lambda: podman("exec", name, "true"), steps - steps // 2)
    if run["status"] != "Success":
        raise RuntimeError(f"(c): the {steps}-step pipeline ended {run['status']}")
    ran = steps_of(run)
    span = when(ran[-1]["finished_at"]) - when(ran[0]["started_at"])
    each = [when(s["finished_at"]) - when(s["started_at"]) for s in ran]
    context = run["batches"][0]["contexts"][0]
    whole = when(context["finished_at"]) - when(context["started_at"])
    bare = sum(execs)
    print(
        f"(c) {steps} steps in a warm container {span:.2f} s ({span / steps * 1000:.0f} ms/step) "
        f"vs {steps} `podman exec` {bare:.2f} s ({bare / steps * 1000:.0f} ms/exec): "
        f"{span / bare:.2f}× (target ≤ 1.3×: {verdict(span <= 1.3 * bare)})"
    )
    step_p50, exec_p50 = statistics.median(each), statistics.median(execs)
    print(
        f"    p50 step {step_p50 * 1000:.0f} ms vs p50 exec {exec_p50 * 1000:.0f} ms: "
        f"{step_p50 / exec_p50:.2f}×; within the span: in steps {sum(each):.2f} s, between "
        f"steps {span - sum(each):.2f} s; the whole context {whole:.2f} s (provisioning and "
        f"release {whole - span:.2f} s)"
    )


def containers_part(
    tmp: Path, parts: str, rounds: int, contexts: int, steps: int, concurrency: int
) -> None:
    problem = podman_problem()
    if problem:
        for part in parts:
            print(f"({part}) skipped: {problem}")
        return
    env = {
        # Only containerised contexts run here: the host sandbox matters for their git
        # steps, not for these figures.
        "OTTO_SANDBOX": "none" if bubblewrap.unavailable() else "bubblewrap",
        "OTTO_CONTAINERS": "podman",
        "OTTO_CONCURRENCY": str(concurrency),
    }
    try:
        with bench_server(tmp, "containers", **env) as bench:
            run = bench.run(in_image(1))  # warm up: the agent pool, podman's caches
            if run["status"] != "Success":
                raise RuntimeError(f"a containerised pipeline ended {run['status']}")
            if "b" in parts:
                part_b(bench, tmp, rounds, contexts, concurrency)
            if "c" in parts:
                part_c(bench, steps)
    finally:
        left = otto_containers(tmp)
        if left:
            print(f"    {len(left)} container(s) of Otto's left behind: removing them")
            podman("rm", "--force", "--time", "0", *left, check=False)
        mine = podman("ps", "--all", "--quiet", "--filter", f"label={BENCH_LABEL}", check=False)
        if mine.stdout.split():
            podman("rm", "--force", "--time", "0", *mine.stdout.split(), check=False)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (a) and (b)")
    parser.add_argument("--burst", type=int, default=200, help="(a): pipelines at once")
    parser.add_argument("--runs", type=int, default=40, help="(a): single runs for latency")
    parser.add_argument("--contexts", type=int, default=20, help="(b): containerised contexts")
    parser.add_argument("--steps", type=int, default=200, help="(c): steps in the container")
    parser.add_argument("--concurrency", type=int, default=2 * (os.cpu_count() or 1))
    parser.add_argument("--parts", default="abc", help="which parts to run, e.g. 'bc'")
    args = parser.parse_args()
    print(
        f"engine: {' '.join(container_engine_args())}; run args: "
        f"{' '.join(container_run_args()) or '(none)'}; image {TEST_IMAGE}"
    )
    with tempfile.TemporaryDirectory(prefix="otto-bench-isolation-") as name:
        tmp = Path(name).resolve()
        if "a" in args.parts:
            part_a(tmp, args.rounds, args.burst, args.runs)
        if wanted := "".join(p for p in "bc" if p in args.parts):
            containers_part(tmp, wanted, args.rounds, args.contexts, args.steps, args.concurrency)
    return 0


if __name__ == "__main__":
    sys.exit(main())
