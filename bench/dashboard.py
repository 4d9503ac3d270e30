"""Dashboard render time: the run page of a big pipeline, the runs list of a big database.

(a) The run page of a pipeline with 50 contexts and ~2,000 transitions;
(b) the runs list (first page, and a filtered page) with 10,000 runs in the database.
Each page is requested in-process (Starlette's test client: no sockets, so the time is
the server's: reads, template, response), best of several rounds. The baseline, in the
same run: the JSON API's answer for the same data (`GET /v1/pipelines/{uuid}` +
`/transitions`, `GET /v1/pipelines?limit=50`), which reads as much but renders nothing.

Targets: (a) ≤ 100 ms, (b) ≤ 100 ms.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="Using `httpx` with")
from starlette.testclient import TestClient  # noqa: E402

from otto.config import Settings  # noqa: E402
from otto.model import Batch, BatchMode, Context, Pipeline, Step  # noqa: E402
from otto.psm import About, PipelineStateMachine, open_store  # noqa: E402
from otto.server import build_app  # noqa: E402
from otto.status import Status  # noqa: E402

RUNS = 10_000
CONTEXTS = 50
STEPS = 19  # per context: 50 × (claim + 19 × 2 + finish) ≈ 2,000 transitions
ROUNDS = 20


def big_pipeline() -> Pipeline:
    def context(name: str) -> Context:
        ctx = Context(properties={"name": name})
        ctx.steps = [
            Step(context=ctx.uuid, symbol="sh", parameters=[f"make part-{i}"]) for i in range(STEPS)
        ]
        return ctx

    return Pipeline(
        batches=[
            Batch(mode=BatchMode.PARALLEL, contexts=[context(f"test-{i}") for i in range(CONTEXTS)])
        ]
    )


def tiny_pipeline() -> Pipeline:
    ctx = Context(properties={"name": "build"})
    ctx.steps = [Step(context=ctx.uuid, symbol="sh", parameters=["true"])]
    return Pipeline(batches=[Batch(mode=BatchMode.LINEAR, contexts=[ctx])])


def populate(db: str) -> str:
    psm = PipelineStateMachine(open_store(db))
    try:
        for i in range(RUNS):
            psm.create(
                tiny_pipeline(),
                repo="https://git.example/app.git",
                ref=f"refs/heads/{'main' if i % 4 else f'topic-{i % 50}'}",
                sha=f"{i:040x}",
                about=About("app", "push by alice", f"commit number {i}"),
            )
        big = big_pipeline()
        psm.create(big, about=About(None, "bench", None))
        contexts = big.batches[0].contexts
        for ctx in contexts:
            psm.award(ctx.uuid, "bench")
        for ctx in contexts:
            lease = psm.claim(ctx.uuid, "bench")
            for step in ctx.steps:
                psm.step_started(lease, step.uuid)
                psm.step_finished(lease, step.uuid, exit_code=0)
            psm.context_finished(lease, Status.SUCCESS)
        count = len(psm.transitions(big.uuid))
        print(
            f"database: {RUNS + 1} runs; the big run has {CONTEXTS} contexts, {count} transitions"
        )
        return big.uuid
    finally:
        psm.close()


def best(fetch: Callable[[], None]) -> tuple[float, float]:
    """(best, median) milliseconds over ROUNDS, after a warm-up."""
    fetch()
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        fetch()
        times.append((time.perf_counter() - start) * 1000)
    return min(times), statistics.median(times)


def measure(client: TestClient, label: str, page: list[str], baseline: list[str]) -> float:
    def get_all(paths: list[str]) -> Callable[[], None]:
        def fetch() -> None:
            for path in paths:
                response = client.get(path)
                assert response.status_code == 200, (path, response.status_code)

        return fetch

    page_best, page_median = best(get_all(page))
    base_best, base_median = best(get_all(baseline))
    print(
        f"{label}: {page_best:.1f} ms best, {page_median:.1f} ms median"
        f" (JSON API for the same data: {base_best:.1f} / {base_median:.1f} ms;"
        f" ratio {page_best / base_best:.2f})"
    )
    return page_best


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="otto-bench-dash-") as tmp:
        home = Path(tmp)
        db = f"sqlite:///{home / 'otto.db'}"
        started = time.perf_counter()
        uuid = populate(db)
        print(f"populated in {time.perf_counter() - started:.1f} s")
        settings = Settings(home=home, db=db, local_orchestrator=False)
        client = TestClient(build_app(settings))  # no lifespan: nothing runs, pages only
        run_page = measure(
            client,
            "(a) run page, 50 contexts",
            [f"/pipelines/{uuid}"],
            [f"/v1/pipelines/{uuid}", f"/v1/pipelines/{uuid}/transitions"],
        )
        runs_list = measure(client, "(b) runs list, 10,000 runs", ["/"], ["/v1/pipelines?limit=50"])
        filtered = measure(
            client,
            "(b) runs list filtered (project, branch, status)",
            ["/?project=app&branch=topic-4&status=Pending"],
            ["/v1/pipelines?limit=50&project=app&ref=refs/heads/topic-4&state=Pending"],
        )
    verdict = all(ms <= 100 for ms in (run_page, runs_list, filtered))
    print(f"targets ≤ 100 ms: {'met' if verdict else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
