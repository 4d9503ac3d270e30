"""`dir`: a block of steps in a subdirectory that may not leave the workspace."""

from __future__ import annotations

from pathlib import Path

from agentkit import AgentHarness, context, sh, spec


def test_dir_runs_its_block_in_the_subdirectory(harness: AgentHarness) -> None:
    inner = [sh("pwd; echo x > made"), spec("dir", "deeper", [sh("pwd")])]
    out = harness.run(context(spec("dir", "a/b", inner), sh("cat a/b/made")))
    assert out.status == "Success"
    assert out.log(inner[0]).splitlines()[-1] == str(out.workspace / "a" / "b")
    assert out.log(inner[1]["parameters"][1][0]).splitlines()[-1] == str(
        out.workspace / "a" / "b" / "deeper"
    )
    assert out.log(0) == "+ cd a/b\n"
    assert out.log(1).splitlines()[-1] == "x"
    # Nested steps are reported like any other, inside their dir step.
    assert out.started()[:2] == [out.invocation.context.steps[0].uuid, inner[0]["uuid"]]


def test_a_failing_nested_step_ends_the_block_and_the_context(harness: AgentHarness) -> None:
    inner = [sh("exit 3"), sh("touch not-here")]
    out = harness.run(context(spec("dir", "sub", inner), sh("touch nor-here")))
    assert out.status == "Failed"
    assert [s.symbol for s in out.result.steps] == ["sh", "dir"]
    assert out.result.steps[1].status.value == "Failed"
    assert not (out.workspace / "sub" / "not-here").exists()
    assert not (out.workspace / "nor-here").exists()


def test_dir_may_go_up_but_not_out(harness: AgentHarness) -> None:
    ok = spec("dir", "a", [spec("dir", "../b", [sh("pwd")])])
    out = harness.run(context(ok))
    assert out.status == "Success"
    assert (out.workspace / "b").is_dir()

    escape = harness.run(context(spec("dir", "../../outside", [sh("touch escaped")])))
    assert escape.status == "Failed"
    assert "leaves the workspace" in (escape.result.reason or "")
    assert not (escape.workspace.parent.parent / "outside").exists()


def test_dir_refuses_a_symlink_out_of_the_workspace(harness: AgentHarness, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    ctx = context(sh(f"ln -s {outside} link"), spec("dir", "link/sub", [sh("touch escaped")]))
    out = harness.run(ctx)
    assert out.status == "Failed"
    assert "leaves the workspace" in (out.result.reason or "")
    assert list(outside.iterdir()) == []


def test_an_unstable_nested_step_marks_the_block_and_the_rest_run(
    harness: AgentHarness,
) -> None:
    inner = [sh('echo unstable >> "$OTTO_STATUS"'), sh("touch here")]
    out = harness.run(context(spec("dir", "sub", inner), sh("touch there")))
    assert out.status == "Unstable"
    assert [s.status.value for s in out.result.steps] == [
        "Unstable",
        "Success",
        "Unstable",
        "Success",
    ]
    assert (out.workspace / "sub" / "here").exists()
    assert (out.workspace / "there").exists()
