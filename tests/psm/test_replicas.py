"""Two server replicas sharing one PostgreSQL database: one log, every event."""

from __future__ import annotations

import threading

from psmkit import Replicas

from otto.model import Batch, Context, Pipeline, Step
from otto.status import Status


def _pipeline() -> Pipeline:
    ctx = Context(properties={"name": "only"})
    ctx.steps = [Step(context=ctx.uuid, symbol="sh", parameters=["true"])]
    return Pipeline(batches=[Batch(contexts=[ctx])])


def test_each_replica_sees_every_transition_in_order(replicas: Replicas) -> None:
    first, second = replicas
    start = second.events.last_seq
    # Writes land on both replicas, interleaved, for the same pipelines.
    for i in range(10):
        writer, other = (first, second) if i % 2 else (second, first)
        pipeline = _pipeline()
        writer.create(pipeline)
        ctx = pipeline.batches[0].contexts[0]
        other.award(ctx.uuid, "o")
        lease = writer.claim(ctx.uuid, "o")
        other.context_finished(lease, Status.SUCCESS)
    newest = max(first.events.last_seq, second.events.last_seq)
    # Per pipeline: created, Running; 5 batch states; context Running, Success; step NotRun;
    # pipeline Complete.
    assert newest - start == 10 * 11

    for replica in replicas:
        seen: list[int] = []
        stop = threading.Event()
        for t in replica.events.stream(after=start, stop=stop):
            seen.append(t.seq)
            if t.seq == newest:
                stop.set()
        assert seen == list(range(start + 1, newest + 1))
