"""`otto explain`: what a pipeline will run, in words, with named parameters."""

from __future__ import annotations

import json
from collections.abc import Iterator

from pydantic import JsonValue

from otto.model import Pipeline, Step
from otto.steps.manifest import Manifest, StepCallError, check_step


def explain_lines(pipeline: Pipeline, manifests: dict[str, Manifest]) -> Iterator[str]:
    yield f"pipeline {pipeline.uuid}: {len(pipeline.batches)} batch(es)"
    for number, batch in enumerate(pipeline.batches, 1):
        yield f"batch {number} ({batch.mode}): {_contexts_phrase(batch.mode, len(batch.contexts))}"
        for context in batch.contexts:
            yield f"  context {context.name or '(unnamed)'}"
            for key, value in context.properties.items():
                if key != "name":
                    yield f"    {key} = {value}"
            for key, value in context.environment.items():
                yield f"    env {key}={value}"
            yield from _step_lines(context.steps, manifests, indent="    ")


def _contexts_phrase(mode: str, count: int) -> str:
    return {
        "Linear": f"{count} context(s), one after another, stopping at the first failure",
        "Parallel": f"{count} context(s) side by side, independently",
        "Fanout": f"{count} context(s) side by side, the first failure aborts the others",
    }[mode]


def _step_lines(steps: list[Step], manifests: dict[str, Manifest], indent: str) -> Iterator[str]:
    for number, step in enumerate(steps, 1):
        try:
            bound = check_step(step, manifests)
        except StepCallError as exc:
            yield f"{indent}{number}. {step.symbol}  !! {exc}"
            continue
        shown = ", ".join(
            f"{name}={_show(value)}" for name, value in bound.items() if name != "block"
        )
        if step.timeout is not None:
            shown = ", ".join(filter(None, [shown, f"timeout={_show(step.timeout)}"]))
        yield f"{indent}{number}. {step.symbol} {shown}".rstrip()
        yield from _step_lines(step.block_steps(), manifests, indent + "   ")


def _show(value: JsonValue) -> str:
    return json.dumps(value, ensure_ascii=False)
