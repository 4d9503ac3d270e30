"""`echo` prints a message; `error` prints it and fails the step with it."""

from __future__ import annotations

from pydantic import JsonValue

from otto.steps.runtime import StepOutcome, StepRuntime


def echo(rt: StepRuntime, params: dict[str, JsonValue]) -> StepOutcome:
    rt.say(str(params["message"]))
    return StepOutcome(0)


def error(rt: StepRuntime, params: dict[str, JsonValue]) -> StepOutcome:
    message = str(params["message"])
    rt.say(message)
    return StepOutcome(1, reason=message)
