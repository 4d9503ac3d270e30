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
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lark import Token, Transformer

from otto import conditions
from otto.duration import parse_duration
from otto.model import (
    CREDENTIAL_NAME,
    RETRY_CAUSES,
    RETRY_ON,
    Batch,
    BatchMode,
    Cache,
    Condition,
    Context,
    Gate,
    Hook,
    HookOn,
    Input,
    Pipeline,
    Step,
    new_uuid,
    retry_causes,
)
from otto.parser.values import IT, STRING

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


class Expression(str):
    """A value written as an expression (`it`, `concat(…)`), by its canonical text: what a
    matrix's template holds, so `render` writes it as it is instead of quoting it."""


class _It:
    """`it` (the value of a one-dimensional `each`) or `it.AXIS`."""

    __slots__ = ("axis", "token")

    def __init__(self, token: Token) -> None:
        self.token = token
        self.axis: str | None = token.value.partition(".")[2] or None


class _Concat:
    __slots__ = ("parts", "token")

    def __init__(self, token: Token, parts: list[Any]) -> None:
        self.token = token
        self.parts = parts


# A value as written: a string (already unquoted) or an expression.
Value = Any
# Axis name → this context's value; "" is the axis of a one-dimensional `each` (`it`).
Binding = dict[str, str]
# The environment variable a matrix sets per axis: `OTTO_EACH`, `OTTO_EACH_OS`, …
EACH_VARIABLE = "OTTO_EACH"
LIBRARIES = ("stdlib",)


def each_variable(axis: str) -> str:
    return f"{EACH_VARIABLE}_{axis.upper()}" if axis else EACH_VARIABLE


def _is_expression(value: Value) -> bool:
    return value.__class__ is _It or value.__class__ is _Concat


def _evaluate(value: Value, binding: Binding | None) -> str:
    """A value's text for one context of a matrix (`binding` None: outside any `each`)."""
    if value.__class__ is _Concat:
        return "".join(_evaluate(part, binding) for part in value.parts)
    if value.__class__ is not _It:
        return str(value)
    if binding is None:
        raise SemanticError(value.token, "'it' is only defined inside an 'each' block")
    axes = [axis for axis in binding if axis]
    if value.axis is None and axes:
        shown = " or ".join(f"it.{axis}" for axis in axes)
        raise SemanticError(value.token, f"this 'each' has named axes: write {shown}")
    if value.axis is not None and value.axis not in binding:
        known = " or ".join(f"it.{axis}" for axis in axes) if axes else "it"
        raise SemanticError(value.token, f"'{value.token.value}' is not defined here (use {known})")
    return binding[value.axis or ""]


def _source(value: Value) -> str:
    """A value's canonical text: a quoted string, `it`, `it.AXIS` or `concat(…)`."""
    if value.__class__ is _Concat:
        return f"concat({', '.join(_source(part) for part in value.parts)})"
    if value.__class__ is _It:
        return str(value.token.value)
    return "'" + str(value).replace("'", "''") + "'"


def _as_expression(value: Value) -> Value:
    return Expression(_source(value)) if _is_expression(value) else value


class _Step:
    __slots__ = ("block", "depth", "dynamic", "parameters", "position", "symbol", "timeout")

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
        values = parameters.values() if isinstance(parameters, dict) else parameters
        self.dynamic = any(_is_expression(v) for v in values) or any(
            inner.dynamic for inner in block or ()
        )

    def bound(self, resolve: Callable[[Value], Any]) -> _Step:
        """A copy with every value resolved (evaluated for a context, or made source text)."""
        copy = _Step.__new__(_Step)
        copy.symbol, copy.position, copy.depth = self.symbol, self.position, self.depth
        copy.timeout, copy.dynamic = self.timeout, False
        if isinstance(self.parameters, dict):
            copy.parameters = {k: resolve(v) for k, v in self.parameters.items()}
        else:
            copy.parameters = [resolve(v) for v in self.parameters]
        copy.block = None if self.block is None else [s.bound(resolve) for s in self.block]
        return copy


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
STAGE_PROPERTIES = (
    "name", "runtime", "arch", "labels", "image", "cpus", "memory", TIMEOUT, RETRY_ON,
)  # fmt: skip
# `credentials = ['npm-token']`: a list of names beside the properties, not one of them.
CREDENTIALS = "credentials"


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
        found[known[name.value]] = _value(next(items))
    return found


# What a `notify` block may react to, in the order `otto explain` lists them.
NOTIFY_OUTCOMES = (HookOn.FAILURE, HookOn.SUCCESS, HookOn.COMPLETE)
# The parts of a gate (the model's `Gate` fields), in words for error messages.
GATE_PARTS = {
    "condition": "a condition",
    "enter_input": "an 'enter' input",
    "exit_input": "an 'exit' input",
}
# `input message: '…', parameters: 'name'` (or a list of names); the message may also be
# the one positional argument.
INPUT_KEYS = ("message", "parameters")
_PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class _Gates(dict[str, Any]):
    """A `when { … }` or `gates { … }` block: gate part → its model value, and `where`:
    gate part → the token that set it."""

    def __init__(self) -> None:
        super().__init__()
        self.where: dict[str, Token] = {}

    def put(self, part: str, value: Any, token: Token, owner: str) -> None:
        if part in self:
            raise SemanticError(token, f"{owner} has {GATE_PARTS[part]} already")
        self[part] = value
        self.where[part] = token

    def merge(self, other: _Gates, owner: str) -> None:
        for part, value in other.items():
            self.put(part, value, other.where[part], owner)

    def model(self) -> Gate | None:
        return Gate(**self) if self else None


class _Side:
    """An `enter { … }` or `exit { … }` block."""

    __slots__ = ("condition", "input", "token")

    def __init__(self, token: Token, condition: Condition | None, input: Input | None) -> None:
        self.token = token
        self.condition = condition
        self.input = input


class _Timeout:
    __slots__ = ("seconds", "token")

    def __init__(self, token: Token, seconds: float) -> None:
        self.token = token
        self.seconds = seconds


class _List(list[Token]):
    """A `['a', 'b']` list of strings."""


# The steps a `cache { … }` block inserts around the stage's own (`otto.steps.caches`);
# their names hold a `-`, which no written step name may.
CACHE_RESTORE, CACHE_SAVE = "cache-restore", "cache-save"
CACHE_KEY = "key"


class _CacheBlock:
    """A `cache { … }` block as written, and where it stands."""

    __slots__ = ("model", "token")

    def __init__(self, token: Token, model: Cache) -> None:
        self.token = token
        self.model = model


def _cache_path(token: Token) -> str:
    path = _unquote(token)
    normal = re.sub(r"/+$", "", path) or path
    if (
        not path
        or path.startswith("/")
        or normal == ".."
        or normal.startswith("../")
        or "/../" in f"/{normal}/"
    ):
        raise SemanticError(
            token, f"cache path '{path}' must be inside the workspace (relative, no '..')"
        )
    return path


def _cache_paths(value: Token | _List) -> list[str]:
    return [_cache_path(t) for t in value] if value.__class__ is _List else [_cache_path(value)]


def _cache_steps(block: _CacheBlock) -> tuple[list[_Step], list[_Step]]:
    """The `cache-restore` steps to run before the stage's steps and `cache-save` after."""
    cache, token = block.model, block.token
    key = {CACHE_KEY: "\n".join(cache.key)} if cache.key else {}
    restores = [_Step(token, {"name": name, **key}, None, 0, None) for name in cache.use]
    saves = [
        _Step(token, {"name": name, "paths": "\n".join(paths), **key}, None, 0, None)
        for name, paths in cache.save.items()
    ]
    for step in restores:
        step.symbol = CACHE_RESTORE
    for step in saves:
        step.symbol = CACHE_SAVE
    return restores, saves


class _Hook:
    """A `rollback { steps { … } }` block, or one outcome of a `notify { … }` block."""

    __slots__ = ("on", "steps", "token")

    def __init__(self, token: Token, on: HookOn, steps: _Steps) -> None:
        self.token = token
        self.on = on
        self.steps = steps

    def bound(self, resolve: Callable[[Value], Any]) -> _Hook:
        return _Hook(self.token, self.on, _Steps(step.bound(resolve) for step in self.steps))


class _Notify(list[_Hook]):
    """A `notify { failure { … } success { … } complete { … } }` block."""

    def __init__(self, token: Token, hooks: list[_Hook]) -> None:
        super().__init__(hooks)
        self.token = token


def hook_label(on: HookOn) -> str:
    """What a hook context is called after its stage's name ("Deploy rollback", "Deploy
    notify failure"), or alone (an unnamed stage's, the pipeline's: "notify failure")."""
    return "rollback" if on == HookOn.ROLLBACK else f"notify {on}"


def hook_properties(stage: dict[str, Any], on: HookOn) -> dict[str, Any]:
    """A stage hook context's properties: its stage's, but its own name and no timeout."""
    name = stage.get("name")
    label = hook_label(on)
    rest = {key: value for key, value in stage.items() if key not in ("name", TIMEOUT)}
    return {"name": f"{name} {label}" if name else label, **rest}


def hooks_by_stage(pipeline: Pipeline) -> dict[str | None, list[Context]]:
    """A pipeline's hook contexts by the stage context each reacts to (None: the
    pipeline's), in their batches' order: a stage's rollback, then its notifications."""
    found: dict[str | None, list[Context]] = {}
    for batch in pipeline.batches:
        for context in batch.contexts:
            if context.hook is not None:
                found.setdefault(context.hook.of, []).append(context)
    return found


class _Stage:
    __slots__ = ("cache", "credentials", "environment", "gates", "hooks", "properties", "steps")

    # properties, environment: name → Value (a string or an expression).

    def __init__(
        self,
        properties: dict[str, str],
        environment: dict[str, str],
        steps: _Steps,
        gates: _Gates,
        credentials: list[str] | None = None,
        cache: _CacheBlock | None = None,
        hooks: list[_Hook] | None = None,
    ):
        self.properties = properties
        self.environment = environment
        self.steps = steps
        self.gates = gates
        self.credentials = credentials or []
        self.cache = cache
        # Its `rollback` first, then its `notify` block's outcomes in the order written.
        self.hooks = hooks or []

    @property
    def dynamic(self) -> bool:
        values = itertools.chain(self.properties.values(), self.environment.values())
        steps = itertools.chain(self.steps, *(hook.steps for hook in self.hooks))
        return any(_is_expression(v) for v in values) or any(s.dynamic for s in steps)

    def bound(self, resolve: Callable[[Value], Any]) -> _Stage:
        """A copy with every value resolved and its gate copied."""
        gates = _Gates()
        for part, value in self.gates.items():
            gates[part] = value.model_copy(deep=True)
        gates.where = dict(self.gates.where)
        return _Stage(
            {k: resolve(v) for k, v in self.properties.items()},
            {k: resolve(v) for k, v in self.environment.items()},
            _Steps(step.bound(resolve) for step in self.steps),
            gates,
            self.credentials,
            self.cache,
            [hook.bound(resolve) for hook in self.hooks],
        )


def _plain(stage: _Stage) -> _Stage:
    """A stage outside any `each`, its `concat(…)` values evaluated ('it' is an error)."""
    return stage.bound(lambda value: _evaluate(value, None)) if stage.dynamic else stage


@dataclass
class Matrix:
    """An `each` block as written: where it stands, its axes (the one-dimensional form's
    single axis is named ""), each context's values in order, and its stage as a template
    context whose expressions are `Expression` strings."""

    batch: int
    line: int
    column: int
    axes: dict[str, list[str]]
    bindings: list[Binding]
    template: Context
    # The template's hook contexts (`rollback`, `notify`), as `template` is the stage's.
    hooks: list[Context] = field(default_factory=list)


@dataclass
class Syntax:
    """What a file says beyond its model, for `otto fmt` and `otto explain`: its `use`
    libraries and its `each` blocks by the index of the batch each expanded into."""

    libraries: list[str] = field(default_factory=list)
    matrices: dict[int, Matrix] = field(default_factory=dict)


class _Each:
    __slots__ = ("axes", "bindings", "stage", "stages", "token")

    def __init__(
        self, token: Token, axes: dict[str, list[str]], stage: _Stage, stages: list[_Stage]
    ):
        self.token = token
        self.axes = axes
        self.stage = stage
        self.stages = stages
        self.bindings = _bindings(axes)


def _bindings(axes: dict[str, list[str]]) -> list[Binding]:
    names = list(axes)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*axes.values())]


class _Use(list[str]):
    """A `use { … }` block's libraries."""


class _Group:
    __slots__ = ("mode", "stages")

    def __init__(self, mode: BatchMode, stages: list[_Stage]) -> None:
        self.mode = mode
        self.stages = stages


def _unquote(token: Token) -> str:
    value: str = token.value
    return value[1:-1].replace("''", "'")


def _value(token: Token) -> Value:
    """A value token (a string, `it`, `it.AXIS` or `concat(…)`): a string unquoted, or the
    expression."""
    text: str = token.value
    if text.startswith("'"):
        return _unquote(token)
    if text.startswith("it"):
        return _It(token)
    parts = _CONCAT_PART.finditer(text, text.index("(") + 1)
    return _Concat(token, [_value(_inner(token, part)) for part in parts])


_CONCAT_PART = re.compile(f"{STRING}|{IT}")


def _inner(token: Token, part: re.Match[str]) -> Token:
    """The token of one part of a `concat(…)`, where it stands in the file."""
    return Token("VALUE", part.group(), start_pos=(token.start_pos or 0) + part.start())


def _is_key(child: Any) -> bool:
    return child.__class__ is Token and child.type == "KEY"


def _retry_on(token: Token) -> str:
    """A `retry_on`'s text, checked to name only failures an automatic retry answers."""
    value = _value(token)
    if _is_expression(value):
        raise SemanticError(token, f"{RETRY_ON}: a plain string, not {token.value}")
    for cause in sorted(retry_causes({RETRY_ON: value})):
        if cause not in RETRY_CAUSES:
            known = ", ".join(RETRY_CAUSES)
            message = f"{RETRY_ON}: '{cause}' is not a failure retried automatically ({known})"
            raise SemanticError(token, message, [f"'{c}'" for c in RETRY_CAUSES])
    return value


def _duration(token: Token) -> str:
    """A timeout's text, checked to be a duration (`otto.duration`) where it stands."""
    value = _value(token)
    if _is_expression(value):
        raise SemanticError(token, f"{TIMEOUT}: a duration is a plain string, not {token.value}")
    try:
        parse_duration(value)
    except ValueError as exc:
        raise SemanticError(token, f"{TIMEOUT}: {exc}") from None
    return value


# The stage properties whose value is checked where it stands (a plain string).
_PLAIN: dict[str, Callable[[Token], Any]] = {TIMEOUT: _duration, RETRY_ON: _retry_on}


class Builder(Transformer[Token, Pipeline]):
    """Rule callbacks; stateless, so one instance serves every parse (and thread)."""

    def step(self, children: list[Any]) -> _Step:
        name: Token = children[0]
        block: list[_Step] | None = None
        positional: list[Any] | None = None if _is_key(children[1]) else []
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
            elif _is_key(child):
                key = child
            elif key is None:
                assert positional is not None  # the grammar puts positional ones first
                positional.append(_value(child))
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
                    keywords[key.value] = _value(child)
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
            env[name.value] = _value(children[i + 1])
        return env

    def runtime(self, children: list[Any]) -> _Runtime:
        return _settings(children, RUNTIME_PROPERTIES, "runtime")

    def docker(self, children: list[Any]) -> _Runtime:
        return _settings(children, CONTAINER_PROPERTIES, "docker")

    def stage(self, children: list[Any]) -> _Stage:
        properties: dict[str, str] = {}
        environment: _Environment | None = None
        gates = _Gates()
        name: str | None = None
        credentials: list[str] = []
        cache: _CacheBlock | None = None
        steps: _Steps | None = None
        rollback: _Hook | None = None
        notify: _Notify | None = None
        key: Token | None = None
        for child in children[1:]:
            if child.__class__ is _Steps:
                steps = child
            elif child.__class__ is _Hook:
                if rollback is not None:
                    raise SemanticError(child.token, "a stage has at most one 'rollback' block")
                rollback = child
            elif child.__class__ is _Notify:
                if notify is not None:
                    raise SemanticError(child.token, "a stage has at most one 'notify' block")
                notify = child
            elif child.__class__ is _CacheBlock:
                if cache is not None:
                    raise SemanticError(child.token, "a stage has at most one 'cache' block")
                cache = child
            elif child.__class__ is _Gates:
                gates.merge(child, "this stage")
            elif child.__class__ is _Environment:
                if environment is not None:
                    raise SemanticError(child.token, "a stage has at most one 'environment' block")
                environment = child
            elif child.__class__ is _Runtime:
                properties.update(child)
            elif name is None:
                if child.value not in STAGE_PROPERTIES and child.value != CREDENTIALS:
                    raise _unknown_property(child)
                name, key = child.value, child
            elif name == CREDENTIALS:  # a repeated one: the last one wins
                credentials, name = _credentials(child), None
            elif child.__class__ is _List:
                raise SemanticError(key, f"{name}: a string, not a list")
            else:  # a repeated property: the last one wins
                properties[name] = _PLAIN.get(name, _value)(child)
                name = None
        assert steps is not None  # the grammar asks for one
        hooks = [*([rollback] if rollback else []), *(notify or [])]
        return _Stage(properties, dict(environment or {}), steps, gates, credentials, cache, hooks)

    def rollback(self, children: list[Any]) -> _Hook:
        return _Hook(children[0], HookOn.ROLLBACK, children[1])

    def outcome(self, children: list[Any]) -> _Hook:
        return _Hook(children[0], HookOn(children[0].value), children[1])

    def notify(self, children: list[Any]) -> _Notify:
        token: Token = children[0]
        hooks: list[_Hook] = children[1:]
        if not hooks:
            raise SemanticError(
                token,
                "a 'notify' block needs at least one of failure, success or complete, "
                "e.g. notify { failure { steps { sh './page' } } }",
                [f"'{on}'" for on in NOTIFY_OUTCOMES],
            )
        seen: set[HookOn] = set()
        for hook in hooks:
            if hook.on in seen:
                raise SemanticError(hook.token, f"this 'notify' block has a '{hook.on}' already")
            seen.add(hook.on)
        return _Notify(token, hooks)

    def cache(self, children: list[Any]) -> _CacheBlock:
        use: list[str] = []
        save: dict[str, list[str]] = {}
        key: list[str] = []
        items = iter(children[1:])
        for item in items:
            if item.type == "USE":
                name: Token = next(items)
                if name.value in use:
                    raise SemanticError(name, f"cache '{name.value}' is used twice in this block")
                use.append(name.value)
            elif item.value == CACHE_KEY:
                key = _cache_paths(next(items))
            elif item.value in save:
                raise SemanticError(item, f"cache '{item.value}' is saved twice in this block")
            else:
                save[item.value] = _cache_paths(next(items))
        if not use and not save:
            raise SemanticError(
                children[0], "a 'cache' block names caches: NAME = ['path/'] or use NAME"
            )
        return _CacheBlock(children[0], Cache(use=use, save=save, key=key))

    def parallel(self, children: list[Any]) -> _Group:
        return _group(BatchMode.PARALLEL, children)

    def fanout(self, children: list[Any]) -> _Group:
        return _group(BatchMode.FANOUT, children)

    # -- matrices and step libraries ----------------------------------------------------

    def each(self, children: list[Any]) -> _Each:
        token: Token = children[0]
        stage: _Stage = children[-1]
        axes = _axes(token, children[1:-1])
        each = _Each(token, axes, stage, [])
        each.stages = [_expand(token, stage, binding) for binding in each.bindings]
        _check_names(token, each)
        return each

    def use(self, children: list[Any]) -> _Use:
        for library in children[1:]:
            if library.value not in LIBRARIES:
                raise SemanticError(
                    library,
                    f"unknown step library '{library.value}' (the libraries: "
                    f"{', '.join(LIBRARIES)})",
                    [f"'{name}'" for name in LIBRARIES],
                )
        return _Use(library.value for library in children[1:])

    # -- gates -----------------------------------------------------------------------

    def when(self, children: list[Any]) -> _Gates:
        gates = _Gates()
        gates.put("condition", _condition(children[0], children[1]), children[0], "a 'when'")
        return gates

    def gates(self, children: list[Any]) -> _Gates:
        gates = _Gates()
        for side in children[1:]:
            if side.token.value == "enter":
                if side.condition is None and side.input is None:
                    raise SemanticError(
                        side.token, "an 'enter' gate needs a condition or an 'input'"
                    )
                if side.condition is not None:
                    gates.put("condition", side.condition, side.token, "this 'gates' block")
                if side.input is not None:
                    gates.put("enter_input", side.input, side.token, "this 'gates' block")
            else:
                gates.put("exit_input", side.input, side.token, "this 'gates' block")
        return gates

    def enter(self, children: list[Any]) -> _Side:
        token: Token = children[0]
        condition = (
            _condition(token, children[1]) if children[1:2] and _is_ast(children[1]) else None
        )
        rest = children[2:] if condition is not None else children[1:]
        return _Side(token, condition, _input(rest))

    def exit(self, children: list[Any]) -> _Side:
        return _Side(children[0], None, _input(children[1:]))

    def gate_timeout(self, children: list[Any]) -> _Timeout:
        value: Token = children[1]
        return _Timeout(children[0], parse_duration(_duration(value)))

    def input(self, children: list[Any]) -> Input:
        token: Token = children[0]
        message: str | None = None
        parameters: list[str] = []
        rest = children[1:]
        if rest and rest[0].__class__ is Token and rest[0].type == "STR":
            message = _unquote(rest[0])
            rest = rest[1:]
        for key, value in zip(rest[::2], rest[1::2], strict=True):
            if key.value == "message" and message is None and value.__class__ is Token:
                message = _unquote(value)
            elif key.value == "parameters":
                parameters = _parameter_names(value)
            else:
                raise _bad_input_key(key, value)
        if not message:
            raise SemanticError(token, "an 'input' needs a message: input 'Deploy to production?'")
        return Input(message=message, parameters=parameters)

    def names(self, children: list[Any]) -> _List:
        return _List(children)

    def or_(self, children: list[Any]) -> conditions.Ast:
        return {"op": "||", "left": children[0], "right": children[1]}

    def and_(self, children: list[Any]) -> conditions.Ast:
        return {"op": "&&", "left": children[0], "right": children[1]}

    def not_(self, children: list[Any]) -> conditions.Ast:
        return {"op": "!", "arg": children[0]}

    def compare(self, children: list[Any]) -> conditions.Ast:
        return {"op": children[1].value, "left": children[0], "right": children[2]}

    def string(self, children: list[Any]) -> conditions.Ast:
        return {"str": _unquote(children[0])}

    def true(self, children: list[Any]) -> conditions.Ast:
        return {"bool": True}

    def false(self, children: list[Any]) -> conditions.Ast:
        return {"bool": False}

    def variable(self, children: list[Any]) -> conditions.Ast:
        name: Token = children[0]
        problem = conditions.variable_problem(name.value)
        if problem:
            raise SemanticError(name, problem, ["a variable"])
        return {"var": name.value}

    def start(self, children: list[Any]) -> tuple[Pipeline, Positions, Syntax]:
        batches: list[Batch] = []
        positions: Positions = {}
        syntax = Syntax()
        if children[0].__class__ is _Use:
            syntax.libraries = list(children[0])
            children = children[1:]
        hooks = _HookContexts(positions)
        for item in children[1:]:
            if item.__class__ is _Hook:
                raise SemanticError(
                    item.token, "a rollback belongs to a stage: it undoes what that stage did"
                )
            if item.__class__ is _Notify:
                hooks.add_pipeline(item)
                continue
            if item.__class__ is _Steps:
                stages, mode = [_plain(_Stage({}, {}, item, _Gates()))], BatchMode.LINEAR
            elif item.__class__ is _Stage:
                stages, mode = [_plain(item)], BatchMode.LINEAR
            elif item.__class__ is _Each:
                syntax.matrices[len(batches)] = _matrix(len(batches), item)
                stages, mode = item.stages, BatchMode.PARALLEL
            else:
                stages, mode = [_plain(stage) for stage in item.stages], item.mode
            contexts = [_context(stage, positions) for stage in stages]
            for stage, context in zip(stages, contexts, strict=True):
                hooks.add_stage(stage, context)
            batches.append(Batch.model_construct(mode=mode, contexts=contexts))
        batches += hooks.batches()
        return Pipeline.model_construct(uuid=new_uuid(), batches=batches), positions, syntax


class _HookContexts:
    """The hook contexts of a pipeline as its stages are built: its rollbacks (stage
    order), then its notifications (stage order, each stage's as written, the pipeline's
    last), each group one trailing Parallel batch."""

    def __init__(self, positions: Positions) -> None:
        self.positions = positions
        self.rollbacks: list[Context] = []
        self.notifications: list[Context] = []
        self.pipeline: _Notify | None = None

    def add_stage(self, stage: _Stage, context: Context) -> None:
        for hook in stage.hooks:
            built = _hook_context(hook, stage, context.uuid, self.positions)
            (self.rollbacks if hook.on == HookOn.ROLLBACK else self.notifications).append(built)

    def add_pipeline(self, notify: _Notify) -> None:
        if self.pipeline is not None:
            raise SemanticError(notify.token, "a pipeline has at most one 'notify' block")
        self.pipeline = notify

    def batches(self) -> list[Batch]:
        notifications = [
            *self.notifications,
            *(_hook_context(hook, None, None, self.positions) for hook in self.pipeline or ()),
        ]
        return [
            Batch.model_construct(mode=BatchMode.PARALLEL, contexts=contexts)
            for contexts in (self.rollbacks, notifications)
            if contexts
        ]


def _hook_context(
    hook: _Hook, stage: _Stage | None, of: str | None, positions: Positions
) -> Context:
    """A hook's context: its stage's properties (see `hook_properties`), environment and
    credentials, never its gate or cache; a pipeline's hook (`stage` None) has only a name."""
    uuid = new_uuid()
    return Context.model_construct(
        uuid=uuid,
        properties=hook_properties(stage.properties if stage else {}, hook.on),
        environment=dict(stage.environment) if stage else {},
        steps=_built_steps(hook.steps, uuid, positions),
        gate=None,
        credentials=list(stage.credentials) if stage else [],
        cache=None,
        hook=Hook(on=hook.on, of=of),
    )


def _axes(token: Token, children: list[Any]) -> dict[str, list[str]]:
    """`each('a', 'b')` → {"": ['a', 'b']}; `each(os: [...], py: [...])` → by axis."""
    if not _is_key(children[0]):
        return {"": _axis_values(token, children)}
    axes: dict[str, list[str]] = {}
    for key, values in zip(children[::2], children[1::2], strict=True):
        if key.value in axes:
            raise SemanticError(key, f"axis '{key.value}' is named twice")
        if not values:
            raise SemanticError(key, f"axis '{key.value}' needs at least one value")
        axes[key.value] = _axis_values(key, values)
    return axes


def _axis_values(token: Token, tokens: list[Token]) -> list[str]:
    values: list[str] = []
    for value in tokens:
        text = _unquote(value)
        if text in values:
            raise SemanticError(value, f"'{text}' is listed twice in this 'each'")
        values.append(text)
    return values


def _expand(token: Token, stage: _Stage, binding: Binding) -> _Stage:
    """One context of a matrix: its stage's values evaluated, its values in the environment."""
    bound = stage.bound(lambda value: _evaluate(value, binding))
    for axis, value in binding.items():
        name = each_variable(axis)
        if name in bound.environment:
            raise SemanticError(token, f"'each' sets '{name}'; its stage may not set it too")
        bound.environment[name] = value
    return bound


def _check_names(token: Token, each: _Each) -> None:
    """Contexts of one matrix may not share a name: which one failed would be unclear."""
    seen: dict[str, Binding] = {}
    for stage, binding in zip(each.stages, each.bindings, strict=True):
        name = stage.properties.get("name")
        if name is None:
            continue
        if name in seen:
            raise SemanticError(
                token,
                f"this 'each' gives two contexts the name '{name}' ({_binding_text(seen[name])} "
                f"and {_binding_text(binding)}): use 'it' in the name, e.g. "
                "name = concat('Test ', it)",
            )
        seen[name] = binding


def _binding_text(binding: Binding) -> str:
    return ", ".join(f"it{'.' + axis if axis else ''}='{value}'" for axis, value in binding.items())


def _matrix(batch: int, each: _Each) -> Matrix:
    stage = each.stage.bound(_as_expression)
    template = _context(stage, {})
    hooks = [_hook_context(hook, stage, template.uuid, {}) for hook in stage.hooks]
    line, column = each.token.line or 0, each.token.column or 0
    return Matrix(batch, line, column, each.axes, each.bindings, template, hooks)


def _group(mode: BatchMode, children: list[Any]) -> _Group:
    """A `parallel`/`fanout` block: its gate applies to each of its stages."""
    gates = _Gates()
    stages: list[_Stage] = []
    for child in children[1:]:
        if child.__class__ is _Gates:
            gates.merge(child, f"this '{children[0].value}' block")
        else:
            stages.append(child)
    for stage in stages:
        for part, value in gates.items():
            if part in stage.gates:
                raise SemanticError(
                    stage.gates.where[part],
                    f"this stage's '{children[0].value}' block has {GATE_PARTS[part]} "
                    "for each of its stages already",
                )
            stage.gates[part] = value.model_copy(deep=True)
    return _Group(mode, stages)


def _is_ast(child: Any) -> bool:
    return child.__class__ is dict


def _condition(token: Token, ast: conditions.Ast) -> Condition:
    try:
        conditions.check(ast)
    except conditions.ConditionError as exc:
        raise SemanticError(token, f"condition {exc.message}") from None
    return Condition(source=conditions.source(ast), ast=ast)


def _input(children: list[Any]) -> Input | None:
    """The input of an `enter`/`exit` block, with its timeout if it has one."""
    if not children:
        return None
    if children[0].__class__ is _Timeout:
        raise SemanticError(children[0].token, "a gate's timeout needs an 'input' to wait for")
    found: Input = children[0]
    if len(children) > 1:
        found.timeout = children[1].seconds
    return found


def _parameter_names(value: Token | _List) -> list[str]:
    tokens = value if value.__class__ is _List else [value]
    names: list[str] = []
    for token in tokens:
        name = _unquote(token)
        if not _PARAMETER_NAME.match(name):
            raise SemanticError(
                token, f"'{name}' is not a parameter name (letters, digits and '_')"
            )
        if name in names:
            raise SemanticError(token, f"parameter '{name}' is named twice")
        names.append(name)
    return names


def _bad_input_key(key: Token, value: Any) -> SemanticError:
    if key.value == "message" and value.__class__ is _List:
        return SemanticError(key, "an input's message is a string, not a list")
    if key.value == "message":
        return SemanticError(key, "an input has one message: positional or 'message:', not both")
    return SemanticError(
        key,
        f"unknown input argument '{key.value}' (one of {', '.join(INPUT_KEYS)})",
        [f"'{k}'" for k in INPUT_KEYS],
    )


def _credentials(value: Any) -> list[str]:
    """`credentials = ['npm-token', …]`: names, each checked where it stands."""
    if value.__class__ is not _List:
        token = value if isinstance(value, Token) else value.token
        raise SemanticError(token, f"{CREDENTIALS}: a list of names, e.g. ['npm-token']")
    names = [_unquote(token) for token in value]
    for token, name in zip(value, names, strict=True):
        if not re.match(CREDENTIAL_NAME, name):
            message = f"{CREDENTIALS}: '{name}' is not a name (letters, digits, '.', '_', '-')"
            raise SemanticError(token, message)
    return list(dict.fromkeys(names))


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


def _context(stage: _Stage, positions: Positions) -> Context:
    uuid = new_uuid()
    restores, saves = _cache_steps(stage.cache) if stage.cache else ([], [])
    return Context.model_construct(
        uuid=uuid,
        properties=stage.properties,
        environment=stage.environment,
        steps=_built_steps([*restores, *stage.steps, *saves], uuid, positions),
        gate=stage.gates.model(),
        credentials=stage.credentials,
        cache=stage.cache.model if stage.cache else None,
    )


def _built_steps(steps: list[_Step], context: str, positions: Positions) -> list[Step]:
    built = []
    for step in steps:
        uuid = new_uuid()
        positions[uuid] = step.position
        built.append(
            Step.model_construct(
                uuid=uuid,
                context=context,
                symbol=step.symbol,
                parameters=_parameters(step, context, positions),
                timeout=step.timeout,
            )
        )
    return built


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
