"""Checking every step of a context, nested blocks included, before any runs."""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pydantic import JsonValue, ValidationError

from otto.model import Step
from otto.steps.manifest import Manifest, StepCallError, check_step, step_timeout
from otto.validation import first_error

Check = Callable[[dict[str, JsonValue]], None]


@dataclass
class Plan:
    """Each step's parameters bound by name, and its timeout in seconds, by step uuid."""

    params: dict[str, dict[str, JsonValue]] = field(default_factory=dict)
    timeouts: dict[str, float] = field(default_factory=dict)


def plan_steps(
    steps: list[Step], manifests: Mapping[str, Manifest], checks: Mapping[str, Check]
) -> tuple[Plan, list[str]]:
    """The plan, and one message per problem (empty when every step is fine)."""
    plan = Plan()
    problems: list[str] = []

    def visit(step: Step, where: str) -> None:
        label = f"step {where} (`{step.symbol}`)"
        try:
            uuidlib.UUID(step.uuid)
        except ValueError:
            problems.append(f"{label}: uuid {step.uuid!r} is not a uuid")
            return
        if step.uuid in plan.params:
            problems.append(f"{label}: uuid {step.uuid} is used twice")
            return
        try:
            bound = check_step(step, manifests)
            timeout = step_timeout(step, bound)
            if timeout is not None:
                plan.timeouts[step.uuid] = timeout
            check = checks.get(step.symbol)
            if check is not None:
                check(bound)
        except StepCallError as exc:
            problems.append(f"{label}: {exc}")
            bound = {}
        plan.params[step.uuid] = bound
        manifest = manifests.get(step.symbol)
        for param in manifest.parameters if manifest else []:
            block = bound.get(param.name)
            if param.type != "block" or not isinstance(block, list):
                continue
            for i, raw in enumerate(block, start=1):
                try:
                    inner = Step.model_validate(raw)
                except ValidationError as exc:
                    loc, message = first_error(exc)
                    problems.append(f"step {where}.{i}: {loc}: {message}")
                    continue
                visit(inner, f"{where}.{i}")

    for n, step in enumerate(steps, start=1):
        visit(step, str(n))
    return plan, problems
