"""PSM throughput: durable transitions per second on SQLite and PostgreSQL.

200 pipelines × 5 contexts × 3 steps, driven by a synthetic in-process
executor (many threads, as many orchestrators' reports would arrive). The
baseline, measured in the same run: a bare loop of single-row sqlite3
commits in WAL mode with the same durability (synchronous=FULL).

Targets: SQLite ≥ 10,000 transitions/s and ≥ 0.25 × the baseline;
PostgreSQL ≥ 1,500 transitions/s.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchkit import drive_concurrently  # noqa: E402
from otto.model import Batch, BatchMode, Context, Pipeline, Step  # noqa: E402
from otto.psm import PipelineStateMachine, open_store  # noqa: E402
from otto.status import Status  # noqa: E402

ORCHESTRATOR = "bench"


def make_pipeline() -> Pipeline:
    def context(name: str) -> Context:
        ctx = Context(properties={"name": name})
        ctx.steps = [Step(context=ctx.uuid, symbol="sh", parameters=["true"]) for _ in range(3)]
        return ctx

    return Pipeline(
        batches=[
            Batch(mode=BatchMode.LINEAR, contexts=[context("build")]),
            Batch(mode=BatchMode.PARALLEL, contexts=[context(f"test-{i}") for i in range(3)]),
            Batch(mode=BatchMode.LINEAR, contexts=[context("package")]),
        ]
    )


def drive(psm: PipelineStateMachine, pipeline: Pipeline) -> None:
    psm.create(pipeline)
    for batch in pipeline.batches:
        for ctx in batch.contexts:
            psm.award(ctx.uuid, ORCHESTRATOR)
        for ctx in batch.contexts:
            lease = psm.claim(ctx.uuid, ORCHESTRATOR)
            for step in ctx.steps:
                psm.step_started(lease, step.uuid)
                psm.step_finished(lease, step.uuid, exit_code=0)
            psm.context_finished(lease, Status.SUCCESS)


def bench_psm(url: str, pipelines: int, threads: int) -> tuple[float, int]:
    psm = PipelineStateMachine(open_store(url))
    start_seq = psm.events.last_seq
    pipelines_to_drive = [make_pipeline() for _ in range(pipelines)]
    elapsed = drive_concurrently(pipelines_to_drive, threads, lambda p: drive(psm, p))
    transitions = psm.events.last_seq - start_seq
    psm.close()
    return elapsed, transitions


def bench_bare_sqlite(path: Path, seconds: float = 2.0) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO t (v) VALUES (?)", ("x" * 64,))
        conn.execute("COMMIT")
        count += 1
    elapsed = time.perf_counter() - started
    conn.close()
    return count / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pipelines", type=int, default=200)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()

    # Rounds interleave the baseline and the PSM, so both see the same machine load.
    rounds = []
    for i in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            baseline = bench_bare_sqlite(Path(tmp) / "bare.db")
            elapsed, count = bench_psm(str(Path(tmp) / f"otto{i}.db"), args.pipelines, args.threads)
        rounds.append((count / elapsed, baseline, count, elapsed))
    rate, baseline, count, elapsed = max(rounds)
    print(f"baseline  bare sqlite3 WAL single-row commits: {baseline:,.0f} commits/s")
    print(
        f"sqlite    {count:,} transitions in {elapsed:.2f}s: {rate:,.0f} transitions/s "
        f"({rate / baseline:.2f} x baseline; best of {args.rounds}; "
        f"targets >= 10,000/s and >= 0.25 x)"
    )
    if not args.no_postgres:
        from tests.pgkit import throwaway_postgres  # a throw-away cluster, as the tests start

        with throwaway_postgres() as dsn:
            elapsed, count = min(
                bench_psm(dsn, args.pipelines, args.threads) for _ in range(args.rounds)
            )
        print(
            f"postgres  {count:,} transitions in {elapsed:.2f}s: {count / elapsed:,.0f} "
            f"transitions/s (best of {args.rounds}; target >= 1,500/s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
