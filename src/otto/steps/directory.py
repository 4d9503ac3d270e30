"""`dir`: run a block of steps in a subdirectory, which may not leave the workspace."""

from __future__ import annotations

from pydantic import JsonValue

from otto.model import Step
from otto.steps.paths import check_relative, resolve_inside
from otto.steps.runtime import StepOutcome, StepRuntime


def check(params: dict[str, JsonValue]) -> None:
    check_relative(str(params["directory"]), "`dir` directory")


def run(rt: StepRuntime, params: dict[str, JsonValue]) -> StepOutcome:
    directory = str(params["directory"])
    target = resolve_inside(rt.workspace, rt.cwd, directory, "directory")
    target.mkdir(parents=True, exist_ok=True)
    # Again once it exists: nothing may have swapped a component for a symlink.
    target = resolve_inside(rt.workspace, rt.cwd, directory, "directory")
    rt.say(f"+ cd {target.relative_to(rt.workspace.resolve())}")
    block = params["block"]
    steps = [Step.model_validate(raw) for raw in block] if isinstance(block, list) else []
    return rt.run_block(steps, target)
