"""Helpers for the parser tests: models with their uuids normalised away, the corpus, and
Hypothesis strategies (random pipeline models, strings full of what a lexer could trip on).

Run as a script to write the `.expected.yml` of every valid corpus file that
lacks one (then read it through before committing it):

    .venv/bin/python tests/parser/parserkit.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from otto import conditions
from otto.model import RETRY_ON, HookOn, Pipeline, load, new_uuid
from otto.parser.build import STAGE_PROPERTIES, TIMEOUT, hook_properties

CORPUS = Path(__file__).parent / "corpus"
VALID = sorted((CORPUS / "valid").glob("*.ottofile"))
INVALID = sorted((CORPUS / "invalid").glob("*.ottofile"))


def expected_path(path: Path) -> Path:
    return path.with_suffix(".expected.yml")


def error_path(path: Path) -> Path:
    return path.with_suffix(".error")


class _Names:
    """Stable placeholders for uuids, in the order they are first met."""

    def __init__(self) -> None:
        self.contexts = 0
        self.steps = 0

    def context(self) -> str:
        self.contexts += 1
        return f"context-{self.contexts}"

    def step(self) -> str:
        self.steps += 1
        return f"step-{self.steps}"


def normalise(pipeline: Pipeline) -> dict[str, Any]:
    """The model as plain data, uuids replaced by placeholders.

    Asserts on the way that every step (nested ones too) names its owning
    context, so a model that normalises is one whose `context` fields are right.
    """
    data = pipeline.to_dict()
    names = _Names()
    data["uuid"] = "pipeline"
    placeholders: dict[str, str] = {}
    for batch in data["batches"]:
        for context in batch["contexts"]:
            owner = context["uuid"]
            context["uuid"] = placeholders[owner] = placeholder = names.context()
            for step in context["steps"]:
                _normalise_step(step, owner, placeholder, names)
            hook = context.get("hook", {})
            if "of" in hook:  # a hook context names the stage context it reacts to
                hook["of"] = placeholders[hook["of"]]
    return data


def _normalise_step(step: dict[str, Any], owner: str, placeholder: str, names: _Names) -> None:
    assert step["context"] == owner, f"step {step['symbol']!r} names context {step['context']}"
    step["uuid"] = names.step()
    step["context"] = placeholder
    parameters = step["parameters"]
    values = parameters.values() if isinstance(parameters, dict) else parameters
    for value in values:
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for inner in value:
                _normalise_step(inner, owner, placeholder, names)


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


# Hypothesis strategies.

KEYWORDS = ["pipeline", "stage", "steps", "parallel", "fanout", "environment", "block"]
KEYWORDS += ["rollback", "notify", "failure", "success", "complete"]
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
TAIL = st.text(LETTERS + "0123456789_", max_size=8)
identifiers = st.one_of(
    st.builds(str.__add__, st.sampled_from(LETTERS), TAIL), st.sampled_from(KEYWORDS)
)
# Any property but a timeout, whose value must be a duration.
property_names = st.sampled_from([p for p in STAGE_PROPERTIES if p not in (TIMEOUT, RETRY_ON)])
env_names = st.builds(str.__add__, st.sampled_from(LETTERS + "_"), TAIL)
# Strings full of what a lexer could trip on: quotes, comment markers, braces, line ends.
tricky = st.sampled_from(["'", "''", "//", "/*", "*/", "\n", " ", "\t", "{", "}", ":", ",", "="])
plain = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=8)
strings = st.lists(st.one_of(plain, tricky), max_size=5).map("".join)


def steps(depth: int) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(step(depth), min_size=1, max_size=3 if depth > 1 else 2)


@st.composite
def step(draw: st.DrawFn, depth: int) -> dict[str, Any]:
    block = draw(st.one_of(st.none(), steps(depth - 1))) if depth > 0 else None
    parameters: list[Any] | dict[str, Any]
    if draw(st.booleans()):
        parameters = draw(st.lists(strings, min_size=1, max_size=3))
        if block is not None:
            parameters.append(block)
    else:
        parameters = draw(st.dictionaries(identifiers, strings, min_size=1, max_size=3))
        if block is not None:
            parameters.pop("block", None)  # that key is the block's
            parameters[draw(identifiers.filter(lambda k: k != "block"))] = draw(strings)
            parameters["block"] = block
    return {"symbol": draw(identifiers), "parameters": parameters}


variables = st.one_of(
    st.sampled_from(conditions.VARIABLES),
    st.builds("{}.{}".format, st.sampled_from(conditions.PREFIXES), env_names),
)
operands = st.one_of(
    st.builds(lambda s: {"str": s}, strings),
    st.builds(lambda b: {"bool": b}, st.booleans()),
    st.builds(lambda v: {"var": v}, variables),
)
condition_asts = st.recursive(
    operands,
    lambda inner: st.one_of(
        st.builds(lambda a: {"op": "!", "arg": a}, inner),
        st.builds(
            lambda op, left, right: {"op": op, "left": left, "right": right},
            st.sampled_from([*conditions.COMPARISONS, *conditions.CONNECTIVES]),
            inner,
            inner,
        ),
    ),
    max_leaves=6,
)
inputs = st.fixed_dictionaries(
    {"message": strings.filter(bool)},
    optional={
        "parameters": st.lists(env_names, unique=True, max_size=2),
        "timeout": st.sampled_from([1.5, 30.0, 90.0, 7200.0, 5400.0]),
    },
)


@st.composite
def gate(draw: st.DrawFn) -> dict[str, Any] | None:
    found: dict[str, Any] = {}
    if draw(st.booleans()):
        ast = draw(condition_asts)
        found["condition"] = {"source": conditions.source(ast), "ast": ast}
    for side in ("enter_input", "exit_input"):
        if draw(st.booleans()):
            found[side] = draw(inputs)
    return found or None


@st.composite
def context(draw: st.DrawFn) -> dict[str, Any]:
    drawn = {
        "properties": draw(st.dictionaries(property_names, strings, max_size=3)),
        "environment": draw(st.dictionaries(env_names, strings, max_size=3)),
        "steps": draw(steps(2)),
    }
    found = draw(st.one_of(st.none(), gate()))
    if found is not None:
        drawn["gate"] = found
    return drawn


batch = st.one_of(
    st.builds(lambda c: {"mode": "Linear", "contexts": [c]}, context()),
    st.builds(
        lambda mode, cs: {"mode": mode, "contexts": cs},
        st.sampled_from(["Parallel", "Fanout"]),
        st.lists(context(), max_size=2),
    ),
)


def _fill(step: dict[str, Any], owner: str) -> None:
    step["uuid"], step["context"] = new_uuid(), owner
    parameters = step["parameters"]
    for value in parameters.values() if isinstance(parameters, dict) else parameters:
        if isinstance(value, list):
            for inner in value:
                _fill(inner, owner)


def with_uuids(data: dict[str, Any]) -> dict[str, Any]:
    """Give the drawn model fresh uuids and correct `context` fields."""
    data["uuid"] = new_uuid()
    for b in data["batches"]:
        for c in b["contexts"]:
            c["uuid"] = new_uuid()
            for s in c["steps"]:
                _fill(s, c["uuid"])
    return data


def hook_context(
    stage: dict[str, Any] | None, on: HookOn, steps: list[dict[str, Any]]
) -> dict[str, Any]:
    """The context a `rollback`/`notify` outcome of `stage` (None: the pipeline) makes."""
    uuid = new_uuid()
    for step in steps:
        _fill(step, uuid)
    return {
        "uuid": uuid,
        "properties": hook_properties(stage["properties"] if stage else {}, on),
        "environment": dict(stage["environment"]) if stage else {},
        "steps": steps,
        "hook": {"on": on, "of": stage["uuid"] if stage else None},
    }


NOTIFY_OUTCOMES = [HookOn.FAILURE, HookOn.SUCCESS, HookOn.COMPLETE]


@st.composite
def with_hooks(draw: st.DrawFn, data: dict[str, Any]) -> dict[str, Any]:
    """Add to a drawn model (with uuids) some stages' and the pipeline's hook contexts,
    in the trailing batches as the parser lays them out."""
    rollbacks: list[dict[str, Any]] = []
    notifications: list[dict[str, Any]] = []
    outcomes = st.lists(st.sampled_from(list(HookOn)), unique=True, max_size=2)
    for b in data["batches"]:
        for c in b["contexts"]:
            drawn = draw(outcomes)
            if HookOn.ROLLBACK in drawn:
                rollbacks.append(hook_context(c, HookOn.ROLLBACK, draw(steps(1))))
            notifications += [
                hook_context(c, on, draw(steps(1))) for on in drawn if on != HookOn.ROLLBACK
            ]
    for on in draw(st.lists(st.sampled_from(NOTIFY_OUTCOMES), unique=True, max_size=2)):
        notifications.append(hook_context(None, on, draw(steps(1))))
    data["batches"] += [
        {"mode": "Parallel", "contexts": group} for group in (rollbacks, notifications) if group
    ]
    return data


models = (
    st.lists(batch, max_size=3)
    .flatmap(lambda bs: with_hooks(with_uuids({"batches": bs})))
    .map(load)
)


def main() -> None:
    from otto.parser import parse

    for path in VALID:
        target = expected_path(path)
        if not target.exists():
            target.write_text(dump(normalise(parse(path.read_bytes(), path.name))))
            print(f"wrote {target}")


if __name__ == "__main__":
    main()
