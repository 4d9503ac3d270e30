"""Helpers for the parser tests: models with their uuids normalised away, the corpus.

Run as a script to write the `.expected.yml` of every valid corpus file that
lacks one (then read it through before committing it):

    .venv/bin/python tests/parser/parser_helpers.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from otto.model import Pipeline

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
    for batch in data["batches"]:
        for context in batch["contexts"]:
            owner = context["uuid"]
            context["uuid"] = placeholder = names.context()
            for step in context["steps"]:
                _normalise_step(step, owner, placeholder, names)
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


def main() -> None:
    from otto.parser import parse

    for path in VALID:
        target = expected_path(path)
        if not target.exists():
            target.write_text(dump(normalise(parse(path.read_bytes(), path.name))))
            print(f"wrote {target}")


if __name__ == "__main__":
    main()
