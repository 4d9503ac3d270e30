"""`otto explain`: what a pipeline will run, in words, with named parameters; each hook
(`rollback`, `notify`) under the stage it reacts to, the pipeline's at the end."""

from __future__ import annotations

import json
from collections.abc import Iterator

from pydantic import JsonValue

from otto.conditions import Trigger, evaluate
from otto.duration import duration_text
from otto.model import Cache, Context, Gate, HookOn, Input, Pipeline, Step
from otto.parser.build import Matrix, each_variable, hook_label, hooks_by_stage
from otto.steps.manifest import Manifest, StepCallError, check_step


def explain_lines(
    pipeline: Pipeline,
    manifests: dict[str, Manifest],
    trigger: Trigger | None = None,
    matrices: dict[int, Matrix] | None = None,
) -> Iterator[str]:
    """The pipeline in words; with a `trigger`, what each gate decides for such a run;
    with the file's `matrices` (by batch index), which `each` values each context got."""
    matrices = matrices or {}
    batches = [batch for batch in pipeline.batches if not batch.hooks]
    hooks = hooks_by_stage(pipeline)
    count = sum(map(len, hooks.values()))
    then = f", then {count} hook(s) that run on outcomes" if count else ""
    yield f"pipeline {pipeline.uuid}: {len(batches)} batch(es){then}"
    if trigger is not None:
        yield f"for a run with {_trigger_phrase(trigger)}"
    outcomes: dict[str, list[str]] = {outcome: [] for outcome in OUTCOMES}
    for number, batch in enumerate(batches, 1):
        yield f"batch {number} ({batch.mode}): {_contexts_phrase(batch.mode, len(batch.contexts))}"
        matrix = matrices.get(number - 1)
        if matrix is not None:
            yield f"  expanded from the 'each' at line {matrix.line}, column {matrix.column}"
        for c, context in enumerate(batch.contexts):
            yield f"  context {context.name or '(unnamed)'}"
            if matrix is not None:
                yield f"    each: {_binding_phrase(matrix.bindings[c])}"
            if context.gate is not None:
                yield from _gate_lines(context.gate)
            verdict = None
            if trigger is not None:
                verdict, line = _verdict(context, trigger)
                outcomes[verdict].append(context.name or "(unnamed)")
                yield f"    => {line}"
            for key, value in context.properties.items():
                if key != "name":
                    yield f"    {key} = {value}"
            for key, value in context.environment.items():
                yield f"    env {key}={value}"
            if context.credentials:
                yield f"    credentials: {', '.join(context.credentials)}"
            if context.cache is not None:
                yield f"    cache: {_cache_phrase(context.cache)}"
            yield from _step_lines(context.steps, manifests, indent="    ")
            for hook in hooks.get(context.uuid, []):
                yield from _hook_lines(hook, context.name, verdict, outcomes, manifests, "    ")
    if None in hooks:
        yield "the run's own hooks"
    for hook in hooks.get(None, []):
        verdict = "would run" if trigger is not None else None
        yield from _hook_lines(hook, None, verdict, outcomes, manifests, "  ")
    if trigger is not None:
        yield "; ".join(f"{kind}: {', '.join(names)}" for kind, names in outcomes.items() if names)


# What a gate can decide for a context, in the order `otto explain` sums them up; a
# hook's lot is decided by outcomes, not by the trigger.
OUTCOMES = ("would run", "skipped", "waits for input", "depends on outcomes")


def _hook_lines(
    hook: Context,
    stage: str | None,
    verdict: str | None,
    outcomes: dict[str, list[str]],
    manifests: dict[str, Manifest],
    indent: str,
) -> Iterator[str]:
    """A hook under what it reacts to (`stage` None: the run): when it runs, and, for a
    trigger (`verdict`: what the trigger did to its stage), whether it may."""
    assert hook.hook is not None
    on = hook.hook.on
    what = "the run" if stage is None else (stage or "its stage")
    yield f"{indent}{hook_label(on)}: {_hook_phrase(on, what)}"
    if verdict is not None:
        name = hook.name or hook_label(on)
        if verdict == "skipped":
            outcomes["skipped"].append(name)
            yield f"{indent}  => skipped: {what} is skipped, so it has no outcome to react to"
        else:
            outcomes["depends on outcomes"].append(name)
            yield f"{indent}  => depends on outcomes: {_hook_phrase(on, what)}"
    yield from _step_lines(hook.steps, manifests, indent=f"{indent}  ")


def _hook_phrase(on: HookOn, what: str) -> str:
    return {
        HookOn.ROLLBACK: f"runs if {what} fails",
        HookOn.FAILURE: f"runs if {what} fails",
        HookOn.SUCCESS: f"runs if {what} succeeds (Success or Unstable)",
        HookOn.COMPLETE: f"runs once {what} has ended, whatever its outcome (Aborted too)",
    }[on]


def _cache_phrase(cache: Cache) -> str:
    parts = [f"restores {name}" for name in cache.use]
    parts += [f"saves {name} ({', '.join(paths)})" for name, paths in cache.save.items()]
    keyed = f", keyed by {', '.join(cache.key)}" if cache.key else ""
    return "; ".join(parts) + keyed


def _binding_phrase(binding: dict[str, str]) -> str:
    return ", ".join(
        f"{'it.' + axis if axis else 'it'}={_show(value)} ({each_variable(axis)})"
        for axis, value in binding.items()
    )


def _trigger_phrase(trigger: Trigger) -> str:
    shown = [
        f"{name} {value!r}"
        for name, value in (
            ("branch", trigger.branch),
            ("tag", trigger.tag),
            ("event", trigger.event),
            ("project", trigger.project),
        )
        if value
    ]
    shown += [f"env.{key} {value!r}" for key, value in trigger.environment.items()]
    return ", ".join(shown) or "no branch, tag, event or project"


def _gate_lines(gate: Gate) -> Iterator[str]:
    if gate.condition is not None:
        yield f"    when: {gate.condition.source}"
    if gate.enter_input is not None:
        yield f"    before it runs, waits for: {_input_phrase(gate.enter_input)}"
    if gate.exit_input is not None:
        yield f"    after its steps, waits for: {_input_phrase(gate.exit_input)}"


def _input_phrase(found: Input) -> str:
    details = []
    if found.parameters:
        details.append(f"parameters {', '.join(found.parameters)}")
    if found.timeout is not None:
        details.append(f"aborted after {duration_text(found.timeout)}")
    shown = f"input {_show(found.message)}"
    return f"{shown} ({'; '.join(details)})" if details else shown


def _verdict(context: Context, trigger: Trigger) -> tuple[str, str]:
    """(outcome, the line saying it) of a context's gate for a run of `trigger`."""
    gate = context.gate or Gate()
    seen = ""
    if gate.condition is not None:
        holds, values = evaluate(gate.condition.ast, trigger.variables(context.environment))
        seen = ", ".join(f"{name}={_show(value)}" for name, value in values.items())
        if not holds:
            return "skipped", f"skipped: the condition is false ({seen or 'no variables'})"
    if gate.enter_input is not None:
        return "waits for input", "waits for input before it runs"
    if gate.exit_input is not None:
        return "would run", "runs, then waits for input before it counts as done"
    return "would run", f"runs (the condition holds: {seen})" if seen else "runs"


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
