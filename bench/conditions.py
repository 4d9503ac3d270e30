"""What skipped stages cost: a 50-stage pipeline whose 25 stages a false `when { … }`
(`branch == 'release'`) skips, against the same pipeline with those 25 stages removed
(each stage its own batch, 3 steps each).

(a) Whole runs through a real `otto server` (started here), one after another, the two
kinds interleaved so both see the same machine load: the median time from submit to
Complete. Target: the gated pipeline completes no slower than the short one (±10 %).
(b) The PSM alone, in process, driven by a synthetic executor (many threads, as in
bench/psm.py): no step runs, so what remains is the bookkeeping, the worst case. Its
snapshots read every context of the run, so a pipeline twice as long costs more here
whatever its stages do; printed for reference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchkit import Completions, drive_concurrently  # noqa: E402
from otto.model import Pipeline  # noqa: E402
from otto.parser import parse  # noqa: E402
from otto.psm import PipelineStateMachine, open_store  # noqa: E402
from otto.psm.records import About  # noqa: E402
from otto.status import Status  # noqa: E402
from serverkit import running_server  # noqa: E402

ORCHESTRATOR = "bench"
STAGES = 50
STEPS = "sh 'true'\n sh 'true'\n sh 'true'"


def ottofile(skipped: bool) -> str:
    """Every other stage of 50 skipped (`skipped`), or left out."""
    stages = []
    for i in range(STAGES):
        if i % 2 == 0:
            stages.append(f"stage {{ name = 'run-{i}' steps {{ {STEPS} }} }}")
        elif skipped:
            gate = "when { branch == 'release' }"
            stages.append(f"stage {{ name = 'skip-{i}' {gate} steps {{ {STEPS} }} }}")
    return "pipeline {\n" + "\n".join(stages) + "\n}\n"


def drive(psm: PipelineStateMachine, pipeline: Pipeline) -> None:
    uuid = psm.create(pipeline, ref="refs/heads/main", about=About(event="push")).uuid
    for batch in pipeline.batches:
        for ctx in batch.contexts:
            if ctx.gate is not None:  # skipped when its batch started
                continue
            psm.award(ctx.uuid, ORCHESTRATOR)
            lease = psm.claim(ctx.uuid, ORCHESTRATOR)
            for step in ctx.steps:
                psm.step_started(lease, step.uuid)
                psm.step_finished(lease, step.uuid, exit_code=0)
            psm.context_finished(lease, Status.SUCCESS)
    assert psm.get(uuid)["status"] == "Success"


def bench(url: str, text: str, pipelines: int, threads: int) -> float:
    """Seconds to drive `pipelines` runs of `text` to their end."""
    psm = PipelineStateMachine(open_store(url))
    models = [parse(text) for _ in range(pipelines)]
    elapsed = drive_concurrently(models, threads, lambda p: drive(psm, p))
    psm.close()
    return elapsed


def check_skipped(url: str) -> None:
    """The gated pipeline really skips its 25 stages."""
    psm = PipelineStateMachine(open_store(url))
    pipeline = parse(ottofile(skipped=True))
    drive(psm, pipeline)
    states = [c["state"] for b in psm.get(pipeline.uuid)["batches"] for c in b["contexts"]]
    psm.close()
    assert states.count("Skipped") == STAGES // 2 and states.count("Success") == STAGES // 2


def whole_runs(runs: int) -> tuple[float, float]:
    """Median seconds from submit to Complete of the gated and of the short pipeline."""
    times: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp) / "home") as server:
        completions = Completions(server.url)
        client = httpx.Client(base_url=server.url, timeout=30)
        for i in range(runs + 1):  # the first round warms up: agent pool, caches
            for kind in (True, False):
                started = time.perf_counter()
                body = {"ottofile": ottofile(kind)}
                uuid = client.post("/v1/pipelines", json=body).json()["uuid"]
                completions.wait([uuid], timeout=300)
                run = client.get(f"/v1/pipelines/{uuid}").json()
                assert run["status"] == "Success", run["status"]
                if i:
                    times[kind].append(completions.done[uuid] - started)
        client.close()
    return statistics.median(times[True]), statistics.median(times[False])


def in_process(pipelines: int, threads: int, rounds: int) -> tuple[float, float]:
    """Best seconds of `rounds` to drive `pipelines` gated, and short, runs in process."""
    with tempfile.TemporaryDirectory() as tmp:
        check_skipped(str(Path(tmp) / "check.db"))
        gated, short = [], []
        for i in range(rounds):
            for kind, times in ((True, gated), (False, short)):
                url = str(Path(tmp) / f"otto-{kind}-{i}.db")
                times.append(bench(url, ottofile(kind), pipelines, threads))
    return min(gated), min(short)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pipelines", type=int, default=40)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    gated, short = whole_runs(args.runs)
    ratio = gated / short
    verdict = "ok" if ratio <= 1.10 else "SLOWER than the target"
    print(f"(a) whole runs, median of {args.runs}: {STAGES} stages with {STAGES // 2} skipped "
          f"{gated:.2f} s, {STAGES // 2} stages {short:.2f} s: ratio {ratio:.3f} "
          f"(target <= 1.10): {verdict}")  # fmt: skip
    gated_psm, short_psm = in_process(args.pipelines, args.threads, args.rounds)
    per = 1000 / args.pipelines
    print(f"(b) the PSM alone, {args.pipelines} runs on {args.threads} threads, best of "
          f"{args.rounds}: {gated_psm * per:.1f} ms a gated run, {short_psm * per:.1f} ms a "
          f"short one: ratio {gated_psm / short_psm:.3f}")  # fmt: skip
    return 0 if ratio <= 1.10 else 1


if __name__ == "__main__":
    sys.exit(main())
