"""`render()`: a pipeline model as an Ottofile, in the one canonical style.

Four-space indents, one step per line, positional arguments as `sh 'x'`,
keyword arguments as `git url: 'u', branch: 'b'`, a step's timeout last
(`sh 'x', timeout: '30s'`), quotes doubled, multi-line
strings written as they are. A Linear batch whose one context has neither
properties, environment nor gate is an orphan `steps` block, any other a `stage`.
A gate that is only a condition is `when { … }`, any other `gates { … }`; a gate
every context of a parallel/fanout block has is written once, on the block.
Given the file's `Syntax`, a batch an `each` block expanded into is written as
that block (its template stage, not the expansion), and a `use` block leads.
Hook contexts (the trailing batches) are written where they belong: a stage's
`rollback` and `notify` after its `steps`, the pipeline's `notify` last.
The output parses back to the same model (uuids aside) and renders the same
again. A model the language cannot express raises ValueError naming the field.
"""

from __future__ import annotations

import re
from typing import Any

from otto import conditions
from otto.duration import duration_text
from otto.model import (
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
)
from otto.parser.build import (
    BLOCK_KEY,
    CACHE_KEY,
    CACHE_RESTORE,
    CACHE_SAVE,
    MAX_BLOCK_DEPTH,
    STAGE_PROPERTIES,
    TIMEOUT,
    Expression,
    Matrix,
    Syntax,
    hook_properties,
)

INDENT = "    "
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def render(pipeline: Pipeline, syntax: Syntax | None = None) -> str:
    """The canonical Ottofile text of `pipeline`; ValueError if the language cannot say it.

    With the `syntax` its file was parsed with, its `use` and `each` blocks are kept."""
    syntax = syntax or Syntax()
    out = []
    if syntax.libraries:
        out += ["use {", *(f"{INDENT}{library}" for library in syntax.libraries), "}"]
    out.append("pipeline {")
    hooks = _hooks(pipeline, syntax)
    for b, batch in enumerate(pipeline.batches):
        path = f"batches[{b}]"
        if batch.hooks:
            continue
        if b in syntax.matrices:
            _each(out, syntax.matrices[b], path)
        elif batch.mode == BatchMode.LINEAR:
            if len(batch.contexts) != 1:
                raise ValueError(
                    f"{path}: a Linear batch is written as one 'stage' or 'steps' block, "
                    f"so it needs exactly one context, not {len(batch.contexts)}"
                )
            context = batch.contexts[0]
            if (
                context.properties
                or context.environment
                or context.gate
                or context.cache
                or context.credentials
                or hooks.get(context.uuid)
            ):
                _stage(out, context, 1, f"{path}.contexts[0]", hooks=hooks)
            else:
                _steps(out, context.steps, 1, f"{path}.contexts[0]")
        elif batch.mode in (BatchMode.PARALLEL, BatchMode.FANOUT):
            keyword = "parallel" if batch.mode == BatchMode.PARALLEL else "fanout"
            out.append(f"{INDENT}{keyword} {{")
            shared = _shared_gate(batch.contexts)
            if shared is not None:
                _gate(out, shared, 2, f"{path}.contexts[0].gate")
            for c, context in enumerate(batch.contexts):
                _stage(out, context, 2, f"{path}.contexts[{c}]", shared is None, hooks)
            out.append(f"{INDENT}}}")
        else:
            raise ValueError(f"{path}.mode: unknown batch mode {batch.mode!r}")
    _notify(out, hooks.get(None, []), 1, "pipeline")
    out.append("}")
    return "\n".join(out) + "\n"


def _each(out: list[str], matrix: Matrix, path: str) -> None:
    if list(matrix.axes) == [""]:
        values = ", ".join(quote(value, path) for value in matrix.axes[""])
    else:
        values = ", ".join(
            f"{axis}: {_names_list(listed, path)}" for axis, listed in matrix.axes.items()
        )
    out.append(f"{INDENT}each({values}) {{")
    hooks = {matrix.template.uuid: matrix.hooks}
    _stage(out, matrix.template, 2, f"{path} (each)", hooks=hooks)
    out.append(f"{INDENT}}}")


def quote(value: Any, path: str) -> str:
    """`value` as a single-quoted string literal (an `Expression` as it is)."""
    if isinstance(value, Expression):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"{path}: only strings can be written, not {type(value).__name__}")
    if "\r" in value:
        raise ValueError(f"{path}: a carriage return cannot be written (line ends read as LF)")
    return "'" + value.replace("'", "''") + "'"


def _name(value: Any, pattern: re.Pattern[str], what: str, path: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"{path}: {value!r} is not a valid {what} (letters, digits, '_')")
    return value


def _stage(
    out: list[str],
    context: Context,
    level: int,
    path: str,
    with_gate: bool = True,
    hooks: dict[str | None, list[Context]] | None = None,
) -> None:
    pad = INDENT * level
    out.append(f"{pad}stage {{")
    for key, value in context.properties.items():
        name = _name(key, _IDENT, "property name", f"{path}.properties")
        if name not in STAGE_PROPERTIES:
            raise ValueError(
                f"{path}.properties.{name}: not a stage property ({', '.join(STAGE_PROPERTIES)})"
            )
        out.append(f"{pad}{INDENT}{name} = {quote(value, f'{path}.properties.{key}')}")
    if context.credentials:
        names = _names_list(context.credentials, f"{path}.credentials")
        out.append(f"{pad}{INDENT}credentials = {names}")
    if context.environment:
        out.append(f"{pad}{INDENT}environment {{")
        for key, value in context.environment.items():
            name = _name(key, _ENV_NAME, "variable name", f"{path}.environment")
            value_text = quote(value, f"{path}.environment.{key}")
            out.append(f"{pad}{INDENT * 2}{name} = {value_text}")
        out.append(f"{pad}{INDENT}}}")
    if with_gate and context.gate:
        _gate(out, context.gate, level + 1, f"{path}.gate")
    if context.cache:
        _cache(out, context.cache, level + 1, f"{path}.cache")
    written = [s for s in context.steps if s.symbol not in (CACHE_RESTORE, CACHE_SAVE)]
    _steps(out, written, level + 1, path)
    own = (hooks or {}).get(context.uuid, [])
    for hook in own:
        if hook.hook is not None and hook.hook.on == HookOn.ROLLBACK:
            out.append(f"{pad}{INDENT}rollback {{")
            _steps(out, hook.steps, level + 2, f"{path} (rollback)")
            out.append(f"{pad}{INDENT}}}")
    _notify(out, own, level + 1, path)
    out.append(f"{pad}}}")


def _notify(out: list[str], hooks: list[Context], level: int, path: str) -> None:
    """A `notify { … }` block of the notifications among `hooks`, in their order."""
    outcomes = [h for h in hooks if h.hook is not None and h.hook.on != HookOn.ROLLBACK]
    if not outcomes:
        return
    pad = INDENT * level
    out.append(f"{pad}notify {{")
    for hook in outcomes:
        assert hook.hook is not None
        out.append(f"{pad}{INDENT}{hook.hook.on} {{")
        _steps(out, hook.steps, level + 2, f"{path} (notify {hook.hook.on})")
        out.append(f"{pad}{INDENT}}}")
    out.append(f"{pad}}}")


def _hooks(pipeline: Pipeline, syntax: Syntax) -> dict[str | None, list[Context]]:
    """The hook contexts by the stage context they react to (None: the pipeline's), in
    their order; ValueError if they are not as a file can say them (see `_check_hook`)."""
    stages: dict[str, tuple[int, Context]] = {}
    hook_batches: list[tuple[int, Batch]] = []
    for b, batch in enumerate(pipeline.batches):
        if batch.hooks:
            hook_batches.append((b, batch))
        elif hook_batches:
            raise ValueError(f"batches[{b}]: a batch after hook batches must be hooks too")
        else:
            stages.update((c.uuid, (len(stages), c)) for c in batch.contexts)
    matrix_contexts = {
        c.uuid for b in syntax.matrices for c in pipeline.batches[b].contexts
    }  # written by their matrix's template: checked there
    found: dict[str | None, list[Context]] = {}
    ordered: list[list[Context]] = [[], []]  # rollbacks, notifications
    for b, batch in hook_batches:
        for c, context in enumerate(batch.contexts):
            path = f"batches[{b}].contexts[{c}]"
            hook = _check_hook(context, stages, found, path)
            ordered[hook.on != HookOn.ROLLBACK].append(context)
            if hook.of not in matrix_contexts:
                found.setdefault(hook.of, []).append(context)
    _check_hook_order(hook_batches, ordered, stages)
    return found


def _check_hook(
    context: Context,
    stages: dict[str, tuple[int, Context]],
    found: dict[str | None, list[Context]],
    path: str,
) -> Hook:
    """A hook context's hook, checked to be what the file would make of a `rollback` or
    `notify` block in the stage it reacts to."""
    hook = context.hook
    if hook is None:
        raise ValueError(f"{path}.hook: a hook batch holds only hook contexts")
    if hook.of is not None and hook.of not in stages:
        raise ValueError(f"{path}.hook.of: no stage context {hook.of} before it")
    if hook.of is None and hook.on == HookOn.ROLLBACK:
        raise ValueError(f"{path}.hook.of: a rollback reacts to a stage")
    if any(h.hook is not None and h.hook.on == hook.on for h in found.get(hook.of, [])):
        raise ValueError(f"{path}.hook: a second '{hook.on}' for the same stage")
    stage = stages[hook.of][1] if hook.of is not None else Context()
    expected = (
        hook_properties(stage.properties, hook.on),
        stage.environment,
        stage.credentials,
    )
    if (context.properties, context.environment, context.credentials) != expected:
        raise ValueError(
            f"{path}: a hook context has its stage's properties (but its own name and no "
            "timeout), environment and credentials"
        )
    if context.gate is not None or context.cache is not None:
        raise ValueError(f"{path}: a hook context has no gate and no cache")
    return hook


def _check_hook_order(
    hook_batches: list[tuple[int, Batch]],
    ordered: list[list[Context]],
    stages: dict[str, tuple[int, Context]],
) -> None:
    """Rollbacks in one Parallel batch, then notifications in another, each in stage
    order (the pipeline's last): what parsing the written file gives."""
    expected = [group for group in ordered if group]
    for group in expected:
        position = [stages[c.hook.of][0] if c.hook and c.hook.of else len(stages) for c in group]
        if position != sorted(position):
            expected = []
    actual = [batch.contexts for _, batch in hook_batches]
    modes = {batch.mode for _, batch in hook_batches}
    if actual != expected or modes - {BatchMode.PARALLEL}:
        b = hook_batches[0][0]
        raise ValueError(
            f"batches[{b}]: hook contexts stand in one Parallel batch of rollbacks, then one "
            "of notifications, each in the order of their stages"
        )


def _cache(out: list[str], cache: Cache, level: int, path: str) -> None:
    """`cache { … }`; its `cache-restore`/`cache-save` steps come back when it is parsed."""
    pad = INDENT * level
    out.append(f"{pad}cache {{")
    for name in cache.use:
        out.append(f"{pad}{INDENT}use {_name(name, _IDENT, 'cache name', f'{path}.use')}")
    for name, paths in cache.save.items():
        shown = _name(name, _IDENT, "cache name", f"{path}.save")
        out.append(f"{pad}{INDENT}{shown} = {_names_list(paths, f'{path}.save.{name}')}")
    if cache.key:
        out.append(f"{pad}{INDENT}{CACHE_KEY} = {_names_list(cache.key, f'{path}.key')}")
    out.append(f"{pad}}}")


def _shared_gate(contexts: list[Context]) -> Gate | None:
    """The gate every context of a parallel/fanout block has, written once on the block."""
    gates = [context.gate for context in contexts]
    if not gates or not gates[0] or any(gate != gates[0] for gate in gates[1:]):
        return None
    return gates[0]


def _gate(out: list[str], gate: Gate, level: int, path: str) -> None:
    pad = INDENT * level
    condition = _condition(gate.condition, f"{path}.condition") if gate.condition else None
    if condition is not None and gate.enter_input is None and gate.exit_input is None:
        out.append(f"{pad}when {{ {condition} }}")
        return
    out.append(f"{pad}gates {{")
    enter = [condition] if condition is not None else []
    if gate.enter_input is not None:
        enter += _input(gate.enter_input, f"{path}.enter_input")
    if enter:
        _side(out, "enter", enter, level + 1)
    if gate.exit_input is not None:
        _side(out, "exit", _input(gate.exit_input, f"{path}.exit_input"), level + 1)
    out.append(f"{pad}}}")


def _side(out: list[str], keyword: str, items: list[str], level: int) -> None:
    """`enter { … }` or `exit { … }`: on one line when it holds one item."""
    pad = INDENT * level
    if len(items) == 1:
        out.append(f"{pad}{keyword} {{ {items[0]} }}")
        return
    out.append(f"{pad}{keyword} {{")
    out.extend(f"{pad}{INDENT}{item}" for item in items)
    out.append(f"{pad}}}")


def _condition(condition: Condition, path: str) -> str:
    try:
        conditions.check(condition.ast)
    except conditions.ConditionError as exc:
        raise ValueError(f"{path}.ast: {exc}") from None
    return conditions.source(condition.ast)


def _input(found: Input, path: str) -> list[str]:
    """An input's lines: the `input …` call, then its timeout if it has one."""
    message = quote(found.message, f"{path}.message")
    names = [_name(n, _ENV_NAME, "parameter name", f"{path}.parameters") for n in found.parameters]
    if not names:
        lines = [f"input {message}"]
    else:
        listed = quote(names[0], path) if len(names) == 1 else _names_list(names, path)
        lines = [f"input message: {message}, parameters: {listed}"]
    if found.timeout is not None:
        lines.append(f"{TIMEOUT} = '{duration_text(found.timeout)}'")
    return lines


def _names_list(names: list[str], path: str) -> str:
    return "[" + ", ".join(quote(name, path) for name in names) + "]"


def _steps(out: list[str], steps: list[Any], level: int, path: str) -> None:
    if not steps:
        raise ValueError(f"{path}.steps: a 'steps' block needs at least one step")
    pad = INDENT * level
    out.append(f"{pad}steps {{")
    for s, step in enumerate(steps):
        _step(out, step.symbol, step.parameters, step.timeout, level + 1, 0, f"{path}.steps[{s}]")
    out.append(f"{pad}}}")


def _is_block(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _step(
    out: list[str], symbol: Any, parameters: Any, timeout: Any, level: int, depth: int, path: str
) -> None:
    if depth > MAX_BLOCK_DEPTH:
        raise ValueError(f"{path}: blocks nested more than {MAX_BLOCK_DEPTH} levels deep")
    name = _name(symbol, _IDENT, "step name", f"{path}.symbol")
    block: list[Any] | None = None
    where = f"{path}.parameters"
    if isinstance(parameters, list):
        args = list(parameters)
        if args and _is_block(args[-1]):
            block = args.pop()
            block_path = f"{where}[{len(args)}]"
        text = ", ".join(quote(v, f"{where}[{i}]") for i, v in enumerate(args))
    elif isinstance(parameters, dict):
        kwargs = dict(parameters)
        if _is_block(kwargs.get(BLOCK_KEY)):
            block = kwargs.pop(BLOCK_KEY)
            block_path = f"{where}.{BLOCK_KEY}"
        text = ", ".join(
            f"{_name(k, _IDENT, 'keyword name', where)}: {quote(v, f'{where}.{k}')}"
            for k, v in kwargs.items()
        )
    else:
        raise ValueError(f"{where}: must be a list or a map, not {type(parameters).__name__}")
    if timeout is not None:
        timeout_text = f"{TIMEOUT}: {quote(timeout, f'{path}.{TIMEOUT}')}"
        text = f"{text}, {timeout_text}" if text else timeout_text
    if not text:
        raise ValueError(f"{where}: a step needs at least one argument besides its block")
    pad = INDENT * level
    if block is None:
        out.append(f"{pad}{name} {text}")
        return
    out.append(f"{pad}{name} {text} {{")
    for i, raw in enumerate(block):
        inner = f"{block_path}[{i}]"
        parameters, timeout = raw.get("parameters", []), raw.get(TIMEOUT)
        _step(out, raw.get("symbol"), parameters, timeout, level + 1, depth + 1, inner)
    out.append(f"{pad}}}")
