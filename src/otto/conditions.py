"""Gate conditions: the small expression language of `when { … }` and `gates { enter { … } }`.

The parser turns an expression into a small JSON tree (the model's `Condition.ast`);
this module checks such a tree, writes it back as canonical text and evaluates it, with
no parser needed, so the PSM can decide whether a context runs. The tree's nodes:

    {"str": "main"}                      a string literal
    {"bool": true}                       `true` / `false`
    {"var": "branch"}                    a variable (see VARIABLES and PREFIXES)
    {"op": "==" | "!=" | "=~", "left": …, "right": …}
    {"op": "&&" | "||", "left": …, "right": …}
    {"op": "!", "arg": …}

Values are strings or booleans. `==` and `!=` compare as text (a boolean reads as
`true` or `false`, so `pull_request.fork == true` and `env.DEPLOY == 'true'` both
work); `=~` matches the left side against the right side as a glob (`fnmatchcase`:
`*`, `?`, `[…]`, case-sensitive). Where a truth value is needed, a string is true when
it is not empty. A variable the run does not have reads as the empty string (false),
`pull_request.fork` as false. Both sides of `&&` and `||` are evaluated, so the values
an evaluation saw are every variable the expression names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

Value = str | bool
Ast = dict[str, Any]

# The run's own variables, and the prefixes of named ones: `env.NAME` (the trigger's `-e`
# over the stage environment) and `vars.NAME` (variables captured by earlier steps).
VARIABLES = ("branch", "tag", "event", "project", "pull_request.fork")
PREFIXES = ("env", "vars")
BOOLEAN_VARIABLES = frozenset({"pull_request.fork"})
COMPARISONS = ("==", "!=", "=~")
CONNECTIVES = ("&&", "||")
# Deeper expressions are refused (by the parser at parse time, by `check` on load), so
# neither evaluating nor writing one back recurses without bound.
MAX_DEPTH = 64

_PRECEDENCE = {"||": 1, "&&": 2, "!": 3, "==": 4, "!=": 4, "=~": 4}
_ATOM = 5


class ConditionError(ValueError):
    """A condition tree that is not one; `path` names the bad node (`left.right.op`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def variable_problem(name: str) -> str | None:
    """Why `name` is not a variable a condition may read, or None if it is one."""
    if name in VARIABLES:
        return None
    prefix, _, rest = name.partition(".")
    if prefix in PREFIXES and rest and "." not in rest:
        return None
    if prefix in PREFIXES:
        return f"'{prefix}.' takes one name, as in '{prefix}.NAME'"
    known = ", ".join([*VARIABLES, *(f"{p}.NAME" for p in PREFIXES)])
    return f"unknown variable '{name}' (a condition reads {known})"


def check(ast: Any) -> None:
    """Raise ConditionError unless `ast` is a well-formed tree at most MAX_DEPTH deep.

    Iterative, so a hostile tree of any depth is refused without recursing."""
    pending: list[tuple[Any, str, int]] = [(ast, "", 1)]
    while pending:
        node, path, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise ConditionError(path, f"nested more than {MAX_DEPTH} levels deep")
        pending.extend(_children(node, path, depth))


def _children(node: Any, path: str, depth: int) -> list[tuple[Any, str, int]]:
    if not isinstance(node, dict):
        raise ConditionError(path, f"a node is an object, not {type(node).__name__}")
    keys = set(node)
    if keys == {"str"} and isinstance(node["str"], str):
        return []
    if keys == {"bool"} and isinstance(node["bool"], bool):
        return []
    if keys == {"var"} and isinstance(node["var"], str):
        problem = variable_problem(node["var"])
        if problem:
            raise ConditionError(_join(path, "var"), problem)
        return []
    op = node.get("op")
    if op == "!" and keys == {"op", "arg"}:
        return [(node["arg"], _join(path, "arg"), depth + 1)]
    if op in (*COMPARISONS, *CONNECTIVES) and keys == {"op", "left", "right"}:
        return [
            (node["left"], _join(path, "left"), depth + 1),
            (node["right"], _join(path, "right"), depth + 1),
        ]
    raise ConditionError(path, f"not a condition node: {node!r:.80}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def evaluate(ast: Ast, variables: Mapping[str, Value]) -> tuple[bool, dict[str, Value]]:
    """Whether the condition holds for a run's `variables` (keys as written in conditions:
    `branch`, `env.NAME`, …), and every variable it read with the value it read."""
    seen: dict[str, Value] = {}
    return truth(_value(ast, variables, seen)), seen


def truth(value: Value) -> bool:
    return value if isinstance(value, bool) else value != ""


def _text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _value(node: Ast, variables: Mapping[str, Value], seen: dict[str, Value]) -> Value:
    if "str" in node:
        return str(node["str"])
    if "bool" in node:
        return bool(node["bool"])
    if "var" in node:
        name = node["var"]
        default: Value = False if name in BOOLEAN_VARIABLES else ""
        value = variables.get(name, default)
        seen[name] = value
        return value
    op = node["op"]
    if op == "!":
        return not truth(_value(node["arg"], variables, seen))
    left = _value(node["left"], variables, seen)
    right = _value(node["right"], variables, seen)
    if op == "&&":
        return truth(left) and truth(right)
    if op == "||":
        return truth(left) or truth(right)
    if op == "=~":
        return fnmatchcase(_text(left), _text(right))
    return (_text(left) == _text(right)) == (op == "==")


def source(ast: Ast) -> str:
    """The canonical text of a condition: single spaces around operators, only the
    parentheses the tree needs (and always around a comparison under `!`)."""
    return _source(ast)[0]


def _source(node: Ast) -> tuple[str, int]:
    if "str" in node:
        return "'" + str(node["str"]).replace("'", "''") + "'", _ATOM
    if "bool" in node:
        return ("true" if node["bool"] else "false"), _ATOM
    if "var" in node:
        return str(node["var"]), _ATOM
    op = node["op"]
    level = _PRECEDENCE[op]
    if op == "!":
        return "!" + _operand(node["arg"], _ATOM if _is_comparison(node["arg"]) else level), level
    # Comparisons take atoms; `&&` and `||` group to the left.
    right_level = _ATOM if op in COMPARISONS else level + 1
    left_level = _ATOM if op in COMPARISONS else level
    left = _operand(node["left"], left_level)
    return f"{left} {op} {_operand(node['right'], right_level)}", level


def _is_comparison(node: Ast) -> bool:
    return node.get("op") in COMPARISONS


def _operand(node: Ast, needed: int) -> str:
    text, level = _source(node)
    return text if level >= needed else f"({text})"


@dataclass(frozen=True)
class Trigger:
    """What a run knows when its gates are evaluated; `environment` is the trigger's own
    variables (`-e NAME=VALUE`), which win over a stage's environment."""

    branch: str = ""
    tag: str = ""
    event: str = ""
    project: str = ""
    fork: bool = False
    environment: Mapping[str, str] = field(default_factory=dict)

    def variables(
        self, stage_environment: Mapping[str, str], captured: Mapping[str, str] | None = None
    ) -> dict[str, Value]:
        """The variables a condition of a stage reads; `captured`: what earlier steps
        recorded (`vars.NAME`)."""
        variables: dict[str, Value] = {
            "branch": self.branch,
            "tag": self.tag,
            "event": self.event,
            "project": self.project,
            "pull_request.fork": self.fork,
        }
        environment = {**stage_environment, **self.environment}
        variables.update({f"env.{k}": v for k, v in environment.items()})
        variables.update({f"vars.{k}": v for k, v in (captured or {}).items()})
        return variables
