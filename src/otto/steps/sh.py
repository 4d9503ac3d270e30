"""`sh`: run a script with `/bin/sh -e`, printing it first (`+ make test`)."""

from __future__ import annotations

from pydantic import JsonValue

from otto.steps.runtime import StepOutcome, StepRuntime

SHELL = "/bin/sh"


def run(rt: StepRuntime, params: dict[str, JsonValue]) -> StepOutcome:
    script = str(params["script"])
    rt.write("".join(f"+ {line}\n" for line in script.splitlines() if line.strip()).encode())
    return StepOutcome(rt.run([SHELL, "-e", "-c", script]))
