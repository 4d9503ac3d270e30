"""Step manifests: what a step is called, which parameters it takes, what runs it.

A manifest is a `manifest.yml`:

    symbol: sh
    description: Run a shell script
    entrypoint: builtin            # or a path inside the step library
    parameters:
      - name: script
        type: string               # string | boolean | block
        required: true
        description: The script to run

Positional arguments map to parameter names in manifest order. Every step also takes
a `timeout` (`COMMON_PARAMETERS`: `sh 'make', timeout: '10m'`), which no manifest lists:
a duration (`otto.duration`) after which the step is stopped and ends Failed, `timeout`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from otto.duration import EXAMPLES, DurationError, parse_duration
from otto.model import Parameters, Step
from otto.validation import first_error

BUILTIN = "builtin"
# Any step accepts these on top of its own parameters: `timeout` (`sh 'make', timeout:
# '10m'`; the parser makes it the step's own `timeout`), after which the step is stopped.
COMMON_PARAMETERS = ("timeout",)


class ManifestError(ValueError):
    """A manifest file that does not describe a step."""


class StepCallError(ValueError):
    """A step invocation that does not fit its manifest."""


class Parameter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    type: Literal["string", "boolean", "block"] = "string"
    required: bool = False
    default: JsonValue = None
    description: str = ""


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    symbol: str
    description: str = ""
    entrypoint: str = BUILTIN
    parameters: list[Parameter] = []

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    def bind(self, parameters: Parameters) -> dict[str, JsonValue]:
        """Map positional or keyword arguments to named ones, checked against the manifest."""
        names = [p.name for p in self.parameters]
        if isinstance(parameters, list):
            if len(parameters) > len(names):
                raise StepCallError(
                    f"`{self.symbol}` takes at most {len(names)} positional argument(s) "
                    f"({', '.join(names) or 'none'}), got {len(parameters)}"
                )
            bound = dict(zip(names, parameters, strict=False))
        else:
            bound = dict(parameters)
            for name in bound:
                if name not in names and name not in COMMON_PARAMETERS:
                    raise StepCallError(
                        f"`{self.symbol}` has no parameter `{name}`"
                        + _suggest(name, [*names, *COMMON_PARAMETERS])
                        + f"; it takes: {', '.join(names) or 'none'}"
                    )
        for param in self.parameters:
            if param.name not in bound:
                if param.required:
                    raise StepCallError(
                        f"`{self.symbol}` is missing required parameter `{param.name}`"
                    )
                if param.default is not None:
                    bound[param.name] = param.default
            else:
                _check_type(self.symbol, param, bound[param.name])
        return bound


def _check_type(symbol: str, param: Parameter, value: JsonValue) -> None:
    ok = {
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool) or value in ("true", "false"),
        "block": isinstance(value, list),
    }[param.type]
    if not ok:
        raise StepCallError(f"`{symbol}` parameter `{param.name}` must be a {param.type}")


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean `{close[0]}`?)" if close else ""


def load_manifest(path: Path | str, text: str | None = None) -> Manifest:
    text = Path(path).read_text(encoding="utf-8") if text is None else text
    try:
        data = yaml.safe_load(text)
        return Manifest.model_validate(data)
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        where, message = first_error(exc)
        raise ManifestError(f"{path}: {where}: {message}") from None


@cache
def standard_manifests() -> dict[str, Manifest]:
    """The manifests of the standard steps shipped with Otto, by symbol."""
    folder = resources.files("otto.steps") / "manifests"
    manifests = [
        load_manifest(entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".yml")
    ]
    return {m.symbol: m for m in sorted(manifests, key=lambda m: m.symbol)}


def check_step(step: Step, manifests: dict[str, Manifest]) -> dict[str, JsonValue]:
    """Bind one step's parameters by its manifest; raise StepCallError saying what is wrong."""
    manifest = manifests.get(step.symbol)
    if manifest is None:
        # A step a file cannot name (`cache-save`: the parser inserts it) is not offered.
        known = sorted(symbol for symbol in manifests if "-" not in symbol)
        raise StepCallError(
            f"unknown step `{step.symbol}`{_suggest(step.symbol, known)}; "
            f"known steps: {', '.join(known)}"
        )
    bound = manifest.bind(step.parameters)
    step_timeout(step, bound)
    return bound


def step_timeout(step: Step, bound: Mapping[str, JsonValue]) -> float | None:
    """A step's timeout in seconds: its own `timeout`, else a `timeout` among its keyword
    arguments (as older models have it); StepCallError if it is not a duration."""
    value = step.timeout if step.timeout is not None else bound.get("timeout")
    if value is None:
        return None
    try:
        if not isinstance(value, str | int | float):
            raise DurationError(value, f"write e.g. {EXAMPLES}")
        return parse_duration(value)
    except DurationError as exc:
        raise StepCallError(f"timeout `{value}` is not a duration: {exc.why}") from None


def step_problems(
    steps: list[Step], manifests: dict[str, Manifest]
) -> list[tuple[Step, StepCallError]]:
    """Every step (nested blocks included) that does not fit its manifest, in order."""
    problems: list[tuple[Step, StepCallError]] = []
    for step in steps:
        try:
            check_step(step, manifests)
        except StepCallError as exc:
            problems.append((step, exc))
        problems.extend(step_problems(step.block_steps(), manifests))
    return problems
