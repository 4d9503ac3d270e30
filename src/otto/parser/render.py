"""`render()`: a pipeline model as an Ottofile, in the one canonical style.

Four-space indents, one step per line, positional arguments as `sh 'x'`,
keyword arguments as `git url: 'u', branch: 'b'`, a step's timeout last
(`sh 'x', timeout: '30s'`), quotes doubled, multi-line
strings written as they are. A Linear batch whose one context has neither
properties nor environment is an orphan `steps` block, any other a `stage`.
The output parses back to the same model (uuids aside) and renders the same
again. A model the language cannot express raises ValueError naming the field.
"""

from __future__ import annotations

import re
from typing import Any

from otto.model import BatchMode, Context, Pipeline
from otto.parser.build import BLOCK_KEY, MAX_BLOCK_DEPTH, STAGE_PROPERTIES, TIMEOUT

INDENT = "    "
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def render(pipeline: Pipeline) -> str:
    """The canonical Ottofile text of `pipeline`; ValueError if the language cannot say it."""
    out = ["pipeline {"]
    for b, batch in enumerate(pipeline.batches):
        path = f"batches[{b}]"
        if batch.mode == BatchMode.LINEAR:
            if len(batch.contexts) != 1:
                raise ValueError(
                    f"{path}: a Linear batch is written as one 'stage' or 'steps' block, "
                    f"so it needs exactly one context, not {len(batch.contexts)}"
                )
            context = batch.contexts[0]
            if context.properties or context.environment:
                _stage(out, context, 1, f"{path}.contexts[0]")
            else:
                _steps(out, context.steps, 1, f"{path}.contexts[0]")
        elif batch.mode in (BatchMode.PARALLEL, BatchMode.FANOUT):
            keyword = "parallel" if batch.mode == BatchMode.PARALLEL else "fanout"
            out.append(f"{INDENT}{keyword} {{")
            for c, context in enumerate(batch.contexts):
                _stage(out, context, 2, f"{path}.contexts[{c}]")
            out.append(f"{INDENT}}}")
        else:
            raise ValueError(f"{path}.mode: unknown batch mode {batch.mode!r}")
    out.append("}")
    return "\n".join(out) + "\n"


def quote(value: Any, path: str) -> str:
    """`value` as a single-quoted string literal."""
    if not isinstance(value, str):
        raise ValueError(f"{path}: only strings can be written, not {type(value).__name__}")
    if "\r" in value:
        raise ValueError(f"{path}: a carriage return cannot be written (line ends read as LF)")
    return "'" + value.replace("'", "''") + "'"


def _name(value: Any, pattern: re.Pattern[str], what: str, path: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise ValueError(f"{path}: {value!r} is not a valid {what} (letters, digits, '_')")
    return value


def _stage(out: list[str], context: Context, level: int, path: str) -> None:
    pad = INDENT * level
    out.append(f"{pad}stage {{")
    for key, value in context.properties.items():
        name = _name(key, _IDENT, "property name", f"{path}.properties")
        if name not in STAGE_PROPERTIES:
            raise ValueError(
                f"{path}.properties.{name}: not a stage property ({', '.join(STAGE_PROPERTIES)})"
            )
        out.append(f"{pad}{INDENT}{name} = {quote(value, f'{path}.properties.{key}')}")
    if context.environment:
        out.append(f"{pad}{INDENT}environment {{")
        for key, value in context.environment.items():
            name = _name(key, _ENV_NAME, "variable name", f"{path}.environment")
            value_text = quote(value, f"{path}.environment.{key}")
            out.append(f"{pad}{INDENT * 2}{name} = {value_text}")
        out.append(f"{pad}{INDENT}}}")
    _steps(out, context.steps, level + 1, path)
    out.append(f"{pad}}}")


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
