"""The chaos test, short: two server replicas on PostgreSQL, two remote orchestrators,
the object store on S3, a few kill -9s of each kind while pipelines of every shape run
(tests/chaoskit.py; `bench/chaos.py` is the hour-long version). Then nothing acknowledged
is lost, nothing ran twice, the log is whole and replays, and every event reached its
subscribers once. The checks themselves are proven on faults made up here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from chaoskit import (
    KINDS,
    Move,
    Plan,
    attempt_faults,
    by_context,
    loss_faults,
    retry_faults,
    run,
    s3_objects,
    seq_faults,
    stream_faults,
)


def test_nothing_is_lost_or_run_twice_under_kill_9(
    tmp_path: Path, postgres_dsn: str, moto_endpoint: str, make_bucket: Callable[[], str]
) -> None:
    objects = s3_objects(moto_endpoint, make_bucket())
    plan = Plan(pipelines=30, seconds=60, every=(1.5, 3.0), in_turn=True, seed=16, min_kills=2)
    verdict = run(tmp_path, postgres_dsn, objects, plan)
    assert verdict.ok, verdict.table()
    # The run did what it is for: each kind killed, steps ran, events streamed and resumed.
    assert all(verdict.kills[kind] >= 1 for kind in KINDS), verdict.table()
    assert verdict.acknowledged == plan.pipelines, verdict.table()
    assert verdict.ledger_lines >= plan.pipelines, verdict.table()
    assert verdict.events > 0 and verdict.reconnects >= 2, verdict.table()


def move(seq: int, context: str, to: str, reason: str | None, **data: object) -> Move:
    return Move(seq, "run", "context", context, to, reason, float(seq), dict(data))


def test_the_checks_catch_gaps_duplicates_double_runs_and_wrong_retries(tmp_path: Path) -> None:
    log = [
        move(1, "c1", "Running", "claimed", attempt=1),
        move(2, "c1", "Error", "agent_lost"),  # asked to retry, and not retried
        move(2, "c2", "Running", "claimed", attempt=1),  # a duplicate seq
        move(4, "c2", "Running", "claimed", attempt=1),  # claimed twice; seq 3 missing
        move(5, "c2", "Failed", "exit code 3"),
        move(6, "c2", "Pending", "auto_retry", cause="exit code 3"),  # a script retried
        move(7, "c3", "Running", "claimed", attempt=1),
        move(8, "c3", "Error", "agent_lost"),  # `retry_on = ''`, and retried
        move(9, "c3", "Pending", "auto_retry", cause="agent_lost"),
    ]
    assert seq_faults(log) == ["seq 2 appears 2 times", "seq 3 missing"]
    contexts = by_context(log)
    causes = {"c1": frozenset({"agent_lost"}), "c2": frozenset({"agent_lost"}), "c3": frozenset()}
    retried = retry_faults(contexts, causes)
    assert [p.split(":")[0] for p in retried] == [
        "context c1 seq 2", "context c2 seq 6", "context c3 seq 8",
    ]  # fmt: skip
    ledger = tmp_path / "ledger"
    ledger.write_text("run c1 1\nrun c2 1\nrun c1 1\n")
    twice, work_lost = attempt_faults(contexts, ledger)
    assert twice == [
        "ledger: 'run c1 1' written 2 times", "context c2 attempt 1 claimed 2 times",
    ]  # fmt: skip
    assert work_lost == 1  # c1's attempt 1 ran its steps, then was lost
    whole = [move(n, "c", "Running", None) for n in range(1, 10)]
    assert stream_faults("s", "", [1, 2, 2, 4, 9, 5, 6, 7, 8], whole) == [
        "s: seq 2 2 times", "s: missed seq 3", "s: out of order at 2", "s: out of order at 5",
    ]  # fmt: skip
    assert stream_faults("s", "", [1, 2, 4, 5, 6, 7, 8, 9], whole) == ["s: missed seq 3"]
    assert stream_faults("s", "", list(range(1, 10)), whole) == []
    gone = move(10, "c4", "Error", "agent exited 137")
    assert loss_faults([*log, gone], []) == ["context c4 seq 10: Error 'agent exited 137'"]
