"""Checking every step of a context, nested blocks included, before any runs."""

from __future__ import annotations

import re
import uuid as uuidlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pydantic import JsonValue, ValidationError

from otto.model import Step
from otto.steps.manifest import Manifest, StepCallError, check_step

Check = Callable[[dict[str, JsonValue]], None]
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h)?")
_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600}


@dataclass
class Plan:
    """Each step's parameters bound by name, and its timeout in seconds, by step uuid."""

    params: dict[str, dict[str, JsonValue]] = field(default_factory=dict)
    timeouts: dict[str, float] = field(default_factory=dict)


def parse_timeout(value: JsonValue) -> float:
    """`30`, `'30'`, `'1.5m'`, `'2h'` → seconds; StepCallError otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value).strip())
        if not match:
            raise StepCallError(f"timeout `{value}` must be seconds, or a number with s, m or h")
        seconds = float(match[1]) * _UNITS[match[2]]
    if seconds <= 0:
        raise StepCallError(f"timeout `{value}` must be more than zero")
    return seconds


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
            if "timeout" in bound:
                plan.timeouts[step.uuid] = parse_timeout(bound["timeout"])
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
                    first = exc.errors()[0]
                    loc = ".".join(str(p) for p in first["loc"])
                    problems.append(f"step {where}.{i}: {loc}: {first['msg']}")
                    continue
                visit(inner, f"{where}.{i}")

    for n, step in enumerate(steps, start=1):
        visit(step, str(n))
    return plan, problems
