"""Building the pipeline model while lark parses (an embedded LALR transformer).

Lark calls these callbacks as it reduces each rule, so no parse tree is built.
Steps are collected as light `_Step` records and turned into model objects
only once their context (and so its uuid) exists. The models are made with
`model_construct`: every value is already checked here (strings only, uuids
fresh, every step's `context` its owner), and skipping pydantic's per-step
validation is what keeps the parser fast.
"""

from __future__ import annotations

import difflib
from typing import Any

from lark import Token, Transformer

from otto.duration import parse_duration
from otto.model import Batch, BatchMode, Context, Pipeline, Step, new_uuid

# Nested step blocks deeper than this are refused (the renderer refuses them too),
# so neither the model's consumers nor the renderer recurse without bound.
MAX_BLOCK_DEPTH = 50
# The keyword argument that holds a step's block.
BLOCK_KEY = "block"
# The one keyword argument any step takes, also after positional ones: it becomes the
# step's `timeout`, not one of its parameters. A stage's property of the same name.
TIMEOUT = "timeout"


class SemanticError(Exception):
    """A well-formed file that is still wrong (e.g. a duplicate variable), at a token."""

    def __init__(self, token: Token, message: str, expected: list[str] | None = None) -> None:
        super().__init__(message)
        self.token = token
        self.message = message
        self.expected = expected or []


Positions = dict[str, tuple[int, int]]  # step uuid → (line, column) of its name


class _Step:
    __slots__ = ("block", "depth", "parameters", "position", "symbol", "timeout")

    def __init__(
        self,
        name: Token,
        parameters: list[Any] | dict[str, Any],
        block: list[_Step] | None,
        depth: int,
        timeout: str | None,
    ) -> None:
        self.symbol: str = name.value
        self.position = (name.line or 0, name.column or 0)
        self.parameters = parameters
        self.block = block
        self.depth = depth
        self.timeout = timeout


class _Steps(list[_Step]):
    """A `steps { … }` block."""


class _Environment(dict[str, str]):
    def __init__(self, token: Token) -> None:
        super().__init__()
        self.token = token


class _Runtime(dict[str, str]):
    """A `runtime { … }` block: stage properties, by their model names."""


# `runtime { NAME = … }` and `runtime { docker { NAME = … } }` → the property they set.
RUNTIME_PROPERTIES = {"os": "runtime", "arch": "arch", "labels": "labels", "image": "image"}
CONTAINER_PROPERTIES = {"image": "image", "cpus": "cpus", "memory": "memory"}
# Every property a stage may set (`name = '…'`): any other name is an error where it stands.
STAGE_PROPERTIES = ("name", "runtime", "arch", "labels", "image", "cpus", "memory", TIMEOUT)


def _settings(children: list[Any], known: dict[str, str], block: str) -> _Runtime:
    found = _Runtime()
    items = iter(children[1:])
    for item in items:
        if item.__class__ is _Runtime:  # a `docker { … }` inside `runtime { … }`
            found.update(item)
            continue
        name: Token = item
        if name.value not in known:
            raise SemanticError(
                name, f"unknown setting '{name.value}' in '{block}' (one of {', '.join(known)})"
            )
        found[known[name.value]] = _unquote(next(items))
    return found


class _Stage:
    __slots__ = ("environment", "properties", "steps")

    def __init__(self, properties: dict[str, str], environment: dict[str, str], steps: _Steps):
        self.properties = properties
        self.environment = environment
        self.steps = steps


class _Group:
    __slots__ = ("mode", "stages")

    def __init__(self, mode: BatchMode, stages: list[_Stage]) -> None:
        self.mode = mode
        self.stages = stages


def _unquote(token: Token) -> str:
    value: str = token.value
    return value[1:-1].replace("''", "'")


def _duration(token: Token) -> str:
    """A timeout's text, checked to be a duration (`otto.duration`) where it stands."""
    value = _unquote(token)
    try:
        parse_duration(value)
    except ValueError as exc:
        raise SemanticError(token, f"{TIMEOUT}: {exc}") from None
    return value


class Builder(Transformer[Token, Pipeline]):
    """Rule callbacks; stateless, so one instance serves every parse (and thread)."""

    def step(self, children: list[Any]) -> _Step:
        name: Token = children[0]
        block: list[_Step] | None = None
        positional: list[Any] | None = [] if children[1].type == "STR" else None
        keywords: dict[str, Any] = {}
        timeout: str | None = None
        key: Token | None = None
        for child in children[1:]:
            if child.__class__ is _Step:
                if block is None:
                    block = []
                    if BLOCK_KEY in keywords:
                        raise SemanticError(
                            _find_key(children, BLOCK_KEY),
                            f"keyword argument '{BLOCK_KEY}' clashes with the step's "
                            f"block, which is passed as '{BLOCK_KEY}'",
                        )
                block.append(child)
            elif child.type == "KEY":
                key = child
            elif key is None:
                assert positional is not None  # the grammar puts positional ones first
                positional.append(_unquote(child))
            else:  # a repeated keyword: the last one wins
                if key.value == TIMEOUT:
                    timeout = _duration(child)
                elif positional is not None:
                    raise SemanticError(
                        key,
                        f"only '{TIMEOUT}:' may follow positional arguments, not "
                        f"'{key.value}:' (a step takes positional arguments or keyword "
                        "arguments, not both)",
                    )
                else:
                    keywords[key.value] = _unquote(child)
                key = None
        parameters = keywords if positional is None else positional
        depth = 0
        if block is not None:
            depth = 1 + max(inner.depth for inner in block)
            if depth > MAX_BLOCK_DEPTH:
                raise SemanticError(
                    name, f"blocks nested too deeply (more than {MAX_BLOCK_DEPTH} levels)"
                )
        return _Step(name, parameters, block, depth, timeout)

    def steps(self, children: list[Any]) -> _Steps:
        return _Steps(children[1:])

    def environment(self, children: list[Any]) -> _Environment:
        env = _Environment(children[0])
        for i in range(1, len(children), 2):
            name: Token = children[i]
            if name.value in env:
                raise SemanticError(
                    name, f"environment variable '{name.value}' is set twice in this block"
                )
            env[name.value] = _unquote(children[i + 1])
        return env

    def runtime(self, children: list[Any]) -> _Runtime:
        return _settings(children, RUNTIME_PROPERTIES, "runtime")

    def docker(self, children: list[Any]) -> _Runtime:
        return _settings(children, CONTAINER_PROPERTIES, "docker")

    def stage(self, children: list[Any]) -> _Stage:
        properties: dict[str, str] = {}
        environment: _Environment | None = None
        name: str | None = None
        for child in children[1:-1]:
            if child.__class__ is _Environment:
                if environment is not None:
                    raise SemanticError(child.token, "a stage has at most one 'environment' block")
                environment = child
            elif child.__class__ is _Runtime:
                properties.update(child)
            elif name is None:
                if child.value not in STAGE_PROPERTIES:
                    raise _unknown_property(child)
                name = child.value
            else:  # a repeated property: the last one wins
                properties[name] = _duration(child) if name == TIMEOUT else _unquote(child)
                name = None
        return _Stage(properties, dict(environment or {}), children[-1])

    def parallel(self, children: list[Any]) -> _Group:
        return _Group(BatchMode.PARALLEL, children[1:])

    def fanout(self, children: list[Any]) -> _Group:
        return _Group(BatchMode.FANOUT, children[1:])

    def start(self, children: list[Any]) -> tuple[Pipeline, Positions]:
        batches: list[Batch] = []
        positions: Positions = {}
        for item in children[1:]:
            if item.__class__ is _Steps:
                contexts = [_context({}, {}, item, positions)]
                mode = BatchMode.LINEAR
            elif item.__class__ is _Stage:
                contexts = [_context(item.properties, item.environment, item.steps, positions)]
                mode = BatchMode.LINEAR
            else:
                contexts = [
                    _context(s.properties, s.environment, s.steps, positions) for s in item.stages
                ]
                mode = item.mode
            batches.append(Batch.model_construct(mode=mode, contexts=contexts))
        return Pipeline.model_construct(uuid=new_uuid(), batches=batches), positions


def _unknown_property(name: Token) -> SemanticError:
    close = difflib.get_close_matches(name.value, STAGE_PROPERTIES, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    known = ", ".join(STAGE_PROPERTIES)
    return SemanticError(
        name,
        f"unknown stage property '{name.value}'{hint}; a stage's properties are {known}",
        [f"'{p}'" for p in STAGE_PROPERTIES],
    )


def _find_key(children: list[Any], key: str) -> Token:
    return next(c for c in children[1::2] if isinstance(c, Token) and c.value == key)


def _context(
    properties: dict[str, str], environment: dict[str, str], steps: _Steps, positions: Positions
) -> Context:
    uuid = new_uuid()
    built = []
    for step in steps:
        step_uuid = new_uuid()
        positions[step_uuid] = step.position
        built.append(
            Step.model_construct(
                uuid=step_uuid,
                context=uuid,
                symbol=step.symbol,
                parameters=_parameters(step, uuid, positions),
                timeout=step.timeout,
            )
        )
    return Context.model_construct(
        uuid=uuid, properties=properties, environment=environment, steps=built
    )


def _parameters(step: _Step, context: str, positions: Positions) -> list[Any] | dict[str, Any]:
    if step.block is None:
        return step.parameters
    block = [_raw_step(inner, context, positions) for inner in step.block]
    if isinstance(step.parameters, list):
        return [*step.parameters, block]
    return {**step.parameters, BLOCK_KEY: block}


def _raw_step(step: _Step, context: str, positions: Positions) -> dict[str, Any]:
    uuid = new_uuid()
    positions[uuid] = step.position
    raw: dict[str, Any] = {
        "uuid": uuid,
        "context": context,
        "symbol": step.symbol,
        "parameters": _parameters(step, context, positions),
    }
    if step.timeout is not None:
        raw[TIMEOUT] = step.timeout
    return raw
