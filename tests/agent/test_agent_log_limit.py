"""A step log's size limit (`max_log_bytes`): the log keeps its first part and a
line saying it was cut, the step's process is stopped as a timeout stops it, and the step
ends Failed with reason `log_limit`. (A full disk: tests/server/test_disk_full.py.)"""

from __future__ import annotations

import time

import pytest

from agentkit import AgentHarness, context, sh
from isolationkit import need_bubblewrap

LIMIT = 10_000


@pytest.mark.parametrize("sandbox", ["none", "bubblewrap"])
def test_a_log_over_the_limit_is_cut_and_its_step_stopped(
    harness: AgentHarness, sandbox: str
) -> None:
    if sandbox == "bubblewrap":
        need_bubblewrap()
    # Endless output: only the limit ends this step (and the step after it never runs).
    ctx = context(sh("yes x"), sh("touch after"))
    start = time.monotonic()
    out = harness.run(ctx, max_log_bytes=LIMIT, sandbox={"kind": sandbox})
    assert time.monotonic() - start < 20
    assert (out.status, out.result.reason) == ("Failed", "log_limit")
    step = out.result.steps[0]
    assert (step.status.value, step.reason) == ("Failed", "log_limit")
    assert len(out.result.steps) == 1
    assert not (out.workspace / "after").exists()
    log = out.log().encode()
    head, _, tail = log.partition(b"\n[otto] log cut:")
    assert len(head) == LIMIT  # the first max_log_bytes bytes, exactly
    assert head.startswith(b"+ yes x\n") and set(head[len(b"+ yes x\n") :]) <= set(b"x\n")
    assert tail.endswith(b"step stopped\n") and tail.count(b"\n") == 1  # a final line only
    finished = out.finished()[step.step]
    assert (finished["status"], finished["reason"]) == ("Failed", "log_limit")


def test_a_log_under_the_limit_is_whole(harness: AgentHarness) -> None:
    out = harness.run(context(sh("head -c 5000 /dev/zero | tr '\\0' y")), max_log_bytes=LIMIT)
    assert out.status == "Success"
    assert out.log().endswith("y" * 5000)
    assert "log cut" not in out.log()


def test_the_default_limit_is_a_gigabyte(harness: AgentHarness) -> None:
    assert harness.invocation(context(sh("true"))).max_log_bytes == 1 << 30
