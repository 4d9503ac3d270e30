"""Checking a whole pipeline against its steps, before any of it runs.

What `otto explain` reports and the agent would refuse — an unknown step, a parameter
its manifest does not take, a required one missing, a value the step's own check
refuses (`dir '/etc'`) — found when a pipeline is created, so that a bad one never
starts. Each problem is said where it is: `FILE:LINE:COLUMN: message` with the line and
a caret for an Ottofile, the field's path for a JSON model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from otto.model import Pipeline, Step
from otto.parser import ParseError, parse_located
from otto.parser.source import decode
from otto.steps.builtins import BUILTINS
from otto.steps.manifest import Manifest, StepCallError, check_step, standard_manifests


def pipeline_problems(
    pipeline: Pipeline, manifests: Mapping[str, Manifest] | None = None
) -> list[tuple[Step, StepCallError]]:
    """Every step (nested blocks included) that would not run, with why, in order."""
    known = dict(standard_manifests() if manifests is None else manifests)
    return [
        (step, problem)
        for context in pipeline.contexts()
        for step in _walk(context.steps)
        if (problem := _problem(step, known)) is not None
    ]


def check_ottofile(text: str | bytes, filename: str) -> tuple[Pipeline, str | None]:
    """Parse an Ottofile (ParseError escapes) and check its steps: the pipeline, and
    every problem as `FILE:LINE:COLUMN: message`, the line and a caret (None if fine)."""
    pipeline, positions = parse_located(text, filename)
    problems = pipeline_problems(pipeline)
    if not problems:
        return pipeline, None
    lines = decode(text, filename).split("\n")
    located = []
    for step, problem in problems:
        line, column = positions[step.uuid]
        excerpt = lines[line - 1] if line <= len(lines) else ""
        located.append(str(ParseError(filename, line, column, str(problem), excerpt=excerpt)))
    return pipeline, "\n".join(located)


def check_model(pipeline: Pipeline, field: str = "model") -> str | None:
    """Every problem of a loaded model's steps as `FIELD.PATH: message` (None if fine)."""
    paths = dict(_step_paths(pipeline, field))
    problems = pipeline_problems(pipeline)
    return "\n".join(f"{paths[step.uuid]}: {problem}" for step, problem in problems) or None


def _problem(step: Step, manifests: dict[str, Manifest]) -> StepCallError | None:
    try:
        bound = check_step(step, manifests)
        builtin = BUILTINS.get(step.symbol)
        if builtin is not None and builtin.check is not None:
            builtin.check(bound)
    except StepCallError as exc:
        return exc
    return None


def _walk(steps: list[Step]) -> Iterator[Step]:
    for step in steps:
        yield step
        yield from _walk(step.block_steps())


def _step_paths(pipeline: Pipeline, field: str) -> Iterator[tuple[str, str]]:
    """Step uuid → where it stands in the model (`model.batches[0].contexts[1].steps[2]`)."""

    def visit(step: Step, path: str) -> Iterator[tuple[str, str]]:
        yield step.uuid, path
        for where, block in step.blocks():
            for i, raw in enumerate(block):
                yield from visit(Step.model_validate(raw), f"{path}.{where}[{i}]")

    for b, batch in enumerate(pipeline.batches):
        for c, context in enumerate(batch.contexts):
            for s, step in enumerate(context.steps):
                yield from visit(step, f"{field}.batches[{b}].contexts[{c}].steps[{s}]")
