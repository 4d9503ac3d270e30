"""Every step, nested blocks included, is checked against its manifest before any runs."""

from __future__ import annotations

import pytest

from agentkit import AgentHarness, context, sh, spec


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (spec("shh", "make"), "unknown step `shh` (did you mean `sh`?)"),
        (spec("sh", scritp="make"), "has no parameter `scritp` (did you mean `script`?)"),
        (spec("sh"), "missing required parameter `script`"),
        (spec("echo", "a", "b"), "takes at most 1 positional argument"),
        (spec("sh", script="sleep 1", timeout="soon"), "timeout `soon`"),
        (spec("sh", script="sleep 1", timeout="0"), "more than zero"),
        (spec("git", url="git://x/y", depth="deep"), "depth must be a positive number"),
        (spec("dir", "/etc", [sh("true")]), "must be relative to the workspace"),
        (spec("dir", "sub", [spec("nope")]), "step 2.1 (`nope`): unknown step `nope`"),
        (spec("dir", "sub", [{"symbol": 5, "parameters": []}]), "step 2.1: symbol: Input should"),
        (spec("archive", artifacts="out", name="../x"), "artifact name `../x`"),
        (spec("unarchive", name="a/b"), "artifact name `a/b`"),
    ],
)
def test_a_bad_step_fails_the_context_before_anything_runs(
    harness: AgentHarness, bad: dict[str, object], message: str
) -> None:
    ctx = context(sh("touch ran"), bad, sh("touch ran-too"))
    out = harness.run(ctx)
    assert out.status == "Failed"
    assert message in (out.result.reason or "")
    assert out.started() == []
    assert out.result.steps == []
    assert not (out.workspace / "ran").exists()
    assert "invalid: step 2" in out.context_log
    assert message in out.context_log
    assert out.events == [{**out.events[0], "event": "context_finished", "status": "Failed"}]


def test_every_problem_is_listed(harness: AgentHarness) -> None:
    out = harness.run(context(spec("shh", "a"), spec("echo"), sh("true", timeout="1h")))
    reason = out.result.reason or ""
    assert "step 1 (`shh`)" in reason
    assert "step 2 (`echo`)" in reason
    assert "step 3" not in reason


def test_timeouts_accept_seconds_and_units(harness: AgentHarness) -> None:
    ctx = context(
        spec("sh", script="true", timeout="30"),
        spec("sh", script="true", timeout="1.5m"),
        spec("sh", script="true", timeout=2),
    )
    assert harness.run(ctx).status == "Success"


def test_duplicate_step_uuids_are_refused(harness: AgentHarness) -> None:
    ctx = context(sh("true"), sh("true"))
    ctx.steps[1].uuid = ctx.steps[0].uuid
    out = harness.run(ctx)
    assert out.status == "Failed"
    assert "used twice" in (out.result.reason or "")
