"""The pipeline model: the contract between the parser and the PSM.

A pipeline is a list of batches; a batch runs its contexts in a mode; a
context holds properties, an environment, steps and, when its stage has one, a
gate (a condition, approval inputs before and after its steps). The JSON/YAML field
names are those of the original Otto, so its models load unchanged.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
)

from otto import conditions
from otto.duration import parse_duration
from otto.validation import first_error

M = TypeVar("M", bound=BaseModel)
# A credential's name (`otto.credentials`): what a stage asks for.
CREDENTIAL_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
Parameters = list[JsonValue] | dict[str, JsonValue]
# A stage's `retry_on` property: the infrastructure failures (comma-separated; '' for
# none) after which its context runs again, once, as a new attempt. A failing step is
# never one of them.
RETRY_ON = "retry_on"
RETRY_CAUSES = ("agent_lost", "provision_failed")


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def retry_causes(properties: dict[str, str]) -> frozenset[str]:
    """The failures a context with these properties is retried after: its `retry_on`,
    else every one of `RETRY_CAUSES`."""
    given = properties.get(RETRY_ON)
    if given is None:
        return frozenset(RETRY_CAUSES)
    return frozenset(part.strip() for part in given.split(",") if part.strip())


class ModelError(ValueError):
    """A model that breaks the schema or an invariant; `path` names the bad field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


class BatchMode(StrEnum):
    LINEAR = "Linear"
    PARALLEL = "Parallel"
    FANOUT = "Fanout"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Step(_Strict):
    uuid: str = Field(default_factory=new_uuid)
    context: str
    symbol: str
    parameters: Parameters = Field(default_factory=list)
    # `sh 'make', timeout: '10m'`: the step is stopped and ends Failed (`timeout`) after
    # this long. Not an original Otto field, so it is left out of the JSON when unset.
    timeout: str | None = None

    @model_serializer(mode="wrap")
    def _without_unset_timeout(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if data.get("timeout") is None:
            data.pop("timeout", None)
        return data

    def blocks(self) -> Iterator[tuple[str, list[dict[str, JsonValue]]]]:
        """Parameters holding nested steps (e.g. `dir`'s block): (parameter path, raw steps)."""
        values: Iterator[tuple[str, JsonValue]]
        if isinstance(self.parameters, dict):
            values = ((f".{k}", v) for k, v in self.parameters.items())
        else:
            values = ((f"[{i}]", v) for i, v in enumerate(self.parameters))
        for where, value in values:
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                yield f"parameters{where}", value  # type: ignore[misc]

    def block_steps(self) -> list[Step]:
        return [Step.model_validate(raw) for _, block in self.blocks() for raw in block]


class _Sparse(_Strict):
    """Fields that are None are left out of the JSON (they are not original Otto fields)."""

    @model_serializer(mode="wrap")
    def _without_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {key: value for key, value in data.items() if value is not None}


class Condition(_Strict):
    """`when { branch == 'main' }`: the expression as canonical text (`source`, for people)
    and as a tree (`ast`, for `otto.conditions.evaluate`), which must say the same."""

    source: str
    ast: dict[str, JsonValue]


class Input(_Sparse):
    """`input 'Deploy?'`: the context waits for a person to approve or reject; the values
    of `parameters` are given with the approval. `timeout`: seconds it may wait."""

    message: str = Field(min_length=1)
    parameters: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list
    )
    timeout: float | None = Field(default=None, gt=0)


class Gate(_Sparse):
    """What a context passes before it runs (`condition`, `enter_input`) and before it
    counts as done (`exit_input`)."""

    condition: Condition | None = None
    enter_input: Input | None = None
    exit_input: Input | None = None


CACHE_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"


class Cache(_Strict):
    """`cache { use gems  pip = ['.cache/pip/']  key = 'requirements.txt' }`: the caches a
    context restores before its steps (`use`) and saves after them (`save`: name → paths
    in the workspace), keyed by the contents of the `key` files. The parser also inserts
    the `cache-restore`/`cache-save` steps that do it (`otto.steps.caches`)."""

    use: list[Annotated[str, Field(pattern=CACHE_NAME)]] = Field(default_factory=list)
    save: dict[str, list[str]] = Field(default_factory=dict)
    key: list[str] = Field(default_factory=list)


class HookOn(StrEnum):
    """What a hook context reacts to: `rollback` (its stage failed), or its stage's or the
    pipeline's outcome (`notify { failure | success | complete }`)."""

    ROLLBACK = "rollback"  # its stage ended Failed or Error
    FAILURE = "failure"  # Failed or Error
    SUCCESS = "success"  # Success or Unstable
    COMPLETE = "complete"  # any outcome, Aborted included


class Hook(_Sparse):
    """A context that runs on an outcome, not in the run's order (`rollback { steps }`,
    `notify { failure { steps } }`): `of` is the stage's context uuid, None for the
    pipeline's. Hook contexts stand in the trailing batches of a pipeline (rollbacks,
    then notifications); they run once the rest of the run has ended, aborted too, and
    their outcomes never count in the run's status."""

    on: HookOn
    of: str | None = None


class Context(_Sparse):
    uuid: str = Field(default_factory=new_uuid)
    properties: dict[str, str] = Field(default_factory=dict)
    environment: dict[str, str] = Field(default_factory=dict)
    steps: list[Step] = Field(default_factory=list)
    # `gates { … }` / `when { … }`; left out of the JSON when the stage has none.
    gate: Gate | None = None
    # `credentials = ['npm-token']`: what only this context receives (left out when none).
    credentials: list[Annotated[str, Field(pattern=CREDENTIAL_NAME)]] = Field(default_factory=list)
    # `cache { … }`: left out of the JSON when the stage has none.
    cache: Cache | None = None
    # `rollback { … }` / `notify { … }`: what this hook context reacts to.
    hook: Hook | None = None

    @field_validator("environment", mode="before")
    @classmethod
    def _null_environment(cls, value: Any) -> Any:
        # The original Otto serialises an absent environment as null.
        return {} if value is None else value

    @model_serializer(mode="wrap")
    def _without_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {k: v for k, v in data.items() if v is not None and (v or k != "credentials")}

    @property
    def name(self) -> str:
        return self.properties.get("name", "")


class Batch(_Strict):
    mode: BatchMode = BatchMode.LINEAR
    contexts: list[Context] = Field(default_factory=list)

    @property
    def hooks(self) -> bool:
        """A batch of hook contexts (they are never mixed with others)."""
        return any(context.hook is not None for context in self.contexts)


class Pipeline(_Strict):
    uuid: str = Field(default_factory=new_uuid)
    batches: list[Batch] = Field(default_factory=list)

    def contexts(self) -> Iterator[Context]:
        for batch in self.batches:
            yield from batch.contexts

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


class Checkout(_Strict):
    """The commit a run's workspaces start from: cloned (this exact SHA) before any step
    runs. Made by webhooks (a push) and `otto run` (the working tree), carried by the
    orchestrator to the agent in its invocation."""

    url: str = Field(min_length=1)
    sha: str = Field(pattern=r"^[0-9a-fA-F]{4,64}$")
    branch: str | None = None  # fetched first when given: the commit is usually on it


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load(data: Any) -> Pipeline:
    """Validate a decoded model (dict) and its invariants; raise ModelError naming the field.

    A model of the original parser loads as it is: see `_adopt_orphan_steps`."""
    pipeline = _validate(Pipeline, data)
    _adopt_orphan_steps(pipeline)
    check_invariants(pipeline)
    return pipeline


def _adopt_orphan_steps(pipeline: Pipeline) -> None:
    """The original parser gives the steps of an orphan `steps { }` block (a Linear batch's
    one context, without properties) the pipeline's uuid as their `context`: their own
    context's uuid is meant, and is what they get here."""
    for batch in pipeline.batches:
        if batch.mode != BatchMode.LINEAR or len(batch.contexts) != 1:
            continue
        context = batch.contexts[0]
        if context.properties:
            continue
        for step in context.steps:
            if step.context == pipeline.uuid:
                step.context = context.uuid


def loads(text: str) -> Pipeline:
    """Load a model from JSON or YAML text (JSON is a subset of YAML)."""
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ModelError("", f"not valid JSON or YAML: {exc}") from None
    return load(data)


def check_invariants(pipeline: Pipeline) -> None:
    """Every uuid is unique, every step names the context that owns it, every timeout
    (a stage's `timeout` property, a step's `timeout`) is a duration (`otto.duration`),
    and every gate's condition is a well-formed tree its `source` writes out."""
    seen: dict[str, str] = {pipeline.uuid: "uuid"}

    def claim(uid: str, path: str) -> None:
        _check_uuid(uid, path)
        if uid in seen:
            raise ModelError(path, f"duplicate uuid {uid} (already used at {seen[uid]})")
        seen[uid] = path

    def check_step(step: Step, owner: str, path: str) -> None:
        claim(step.uuid, f"{path}.uuid")
        _check_duration(step.timeout, f"{path}.timeout")
        if step.context != owner:
            raise ModelError(
                f"{path}.context", f"step belongs to context {owner}, not {step.context}"
            )
        for where, block in step.blocks():
            for i, raw in enumerate(block):
                inner_path = f"{path}.{where}[{i}]"
                check_step(_validate(Step, raw, inner_path), owner, inner_path)

    _check_uuid(pipeline.uuid, "uuid")
    for b, batch in enumerate(pipeline.batches):
        for c, context in enumerate(batch.contexts):
            cpath = f"batches[{b}].contexts[{c}]"
            claim(context.uuid, f"{cpath}.uuid")
            _check_duration(context.properties.get("timeout"), f"{cpath}.properties.timeout")
            if context.gate is not None and context.gate.condition is not None:
                _check_condition(context.gate.condition, f"{cpath}.gate.condition")
            for s, step in enumerate(context.steps):
                check_step(step, context.uuid, f"{cpath}.steps[{s}]")
    _check_hooks(pipeline)


def _check_hooks(pipeline: Pipeline) -> None:
    """Hook contexts fill whole batches after every other batch, and each reacts to a
    context of an earlier batch that is not a hook (or to the pipeline, but for rollback)."""
    reacted_to: set[str] = set()
    hooks_began = False
    for b, batch in enumerate(pipeline.batches):
        if not batch.hooks:
            if hooks_began:
                raise ModelError(f"batches[{b}]", "a batch after hook batches must be hooks too")
            reacted_to.update(context.uuid for context in batch.contexts)
            continue
        hooks_began = True
        for c, context in enumerate(batch.contexts):
            path = f"batches[{b}].contexts[{c}].hook"
            hook = context.hook
            if hook is None:
                raise ModelError(path, "a hook batch holds only hook contexts")
            if hook.of is None and hook.on == HookOn.ROLLBACK:
                raise ModelError(f"{path}.of", "a rollback reacts to a stage")
            if hook.of is not None and hook.of not in reacted_to:
                raise ModelError(f"{path}.of", f"no stage context {hook.of} before it")


def _validate(model: type[M], data: Any, path: str = "") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        loc, message = first_error(exc, _path)
        raise ModelError(f"{path}.{loc}" if path and loc else path or loc, message) from None


def _check_duration(value: str | None, path: str) -> None:
    if value is None:
        return
    try:
        parse_duration(value)
    except ValueError as exc:
        raise ModelError(path, str(exc)) from None


def _check_condition(condition: Condition, path: str) -> None:
    try:
        conditions.check(condition.ast)
    except conditions.ConditionError as exc:
        raise ModelError(
            f"{path}.ast.{exc.path}" if exc.path else f"{path}.ast", exc.message
        ) from None
    canonical = conditions.source(condition.ast)
    if condition.source != canonical:
        raise ModelError(f"{path}.source", f"does not say what ast does ({canonical!r})")


def _check_uuid(value: str, path: str) -> None:
    try:
        uuidlib.UUID(value)
    except ValueError:
        raise ModelError(path, f"not a uuid: {value!r}") from None
