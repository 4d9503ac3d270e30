"""The gate condition evaluator (`otto.conditions`): values, operators, the laws of
`&&`/`||`/`!`, what it reports having seen, and the trees it refuses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otto import conditions
from otto.conditions import ConditionError, Trigger, evaluate


def s(text: str) -> dict[str, Any]:
    return {"str": text}


def v(name: str) -> dict[str, Any]:
    return {"var": name}


def op(name: str, left: dict[str, Any], right: dict[str, Any]) -> dict[str, Any]:
    return {"op": name, "left": left, "right": right}


def no(arg: dict[str, Any]) -> dict[str, Any]:
    return {"op": "!", "arg": arg}


RUN = Trigger(branch="main", event="push", project="shop", environment={"DEPLOY": "yes"}).variables(
    {"REGION": "eu", "DEPLOY": "no"}, captured={"version": "1.2"}
)


@pytest.mark.parametrize(
    ("ast", "expected"),
    [
        (op("==", v("branch"), s("main")), True),
        (op("==", v("branch"), s("Main")), False),
        (op("!=", v("branch"), s("main")), False),
        (op("=~", v("branch"), s("ma*")), True),
        (op("=~", v("branch"), s("release/*")), False),
        (op("=~", v("branch"), s("m[a-c]i?")), True),
        (op("=~", s("v1.2"), s("v1.?")), True),
        (op("=~", v("branch"), s("MAIN")), False),  # glob matching is case-sensitive
        (op("==", v("env.DEPLOY"), s("yes")), True),  # the trigger wins over the stage
        (op("==", v("env.REGION"), s("eu")), True),  # the stage environment
        (op("==", v("vars.version"), s("1.2")), True),  # captured by earlier steps
        (op("==", v("pull_request.fork"), {"bool": False}), True),
        (op("==", v("pull_request.fork"), s("false")), True),  # booleans compare as text
        (v("tag"), False),  # an empty string is false
        (v("branch"), True),  # a non-empty one true
        (v("env.MISSING"), False),  # a missing variable is the empty string
        (op("==", v("vars.missing"), s("")), True),
        (v("pull_request.fork"), False),
        (no(v("tag")), True),
        (op("&&", v("branch"), v("tag")), False),
        (op("||", v("branch"), v("tag")), True),
        (op("&&", op("==", v("event"), s("push")), op("==", v("project"), s("shop"))), True),
        ({"bool": True}, True),
        ({"bool": False}, False),
        (s("false"), True),  # a non-empty string, whatever it says
    ],
)
def test_evaluate(ast: dict[str, Any], expected: bool) -> None:
    conditions.check(ast)
    assert evaluate(ast, RUN)[0] is expected


def test_evaluate_reports_every_variable_it_read_with_its_value() -> None:
    ast = op("||", op("==", v("branch"), s("main")), op("=~", v("tag"), s("v*")))
    holds, seen = evaluate(ast, RUN)
    assert holds
    # Both sides are read, though the left one already decided.
    assert seen == {"branch": "main", "tag": ""}
    _, seen = evaluate(no(v("pull_request.fork")), {})
    assert seen == {"pull_request.fork": False}


def test_a_fork_pull_request() -> None:
    variables = Trigger(event="pull_request", fork=True).variables({})
    assert evaluate(no(v("pull_request.fork")), variables) == (False, {"pull_request.fork": True})


values = st.one_of(st.booleans(), st.text(max_size=3))
leaves = st.one_of(
    st.builds(s, st.text(max_size=3)),
    st.builds(lambda b: {"bool": b}, st.booleans()),
    st.builds(v, st.sampled_from(["branch", "tag", "env.A", "vars.B", "pull_request.fork"])),
)
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.builds(no, inner),
        st.builds(op, st.sampled_from(["==", "!=", "=~", "&&", "||"]), inner, inner),
    ),
    max_leaves=8,
)
environments = st.fixed_dictionaries(
    {},
    optional={
        "branch": st.text(max_size=3),
        "tag": st.text(max_size=3),
        "env.A": st.text(max_size=3),
        "vars.B": st.text(max_size=3),
        "pull_request.fork": st.booleans(),
    },
)


def holds(ast: dict[str, Any], env: dict[str, Any]) -> bool:
    return evaluate(ast, env)[0]


@given(trees, trees, environments)
def test_and_or_not_laws(a: dict[str, Any], b: dict[str, Any], env: dict[str, Any]) -> None:
    assert holds(op("&&", a, b), env) == (holds(a, env) and holds(b, env))
    assert holds(op("||", a, b), env) == (holds(a, env) or holds(b, env))
    assert holds(op("&&", a, b), env) == holds(op("&&", b, a), env)
    assert holds(op("||", a, b), env) == holds(op("||", b, a), env)
    assert holds(no(op("&&", a, b)), env) == holds(op("||", no(a), no(b)), env)
    assert holds(no(op("||", a, b)), env) == holds(op("&&", no(a), no(b)), env)
    assert holds(no(no(a)), env) == holds(a, env)
    assert holds(no(a), env) != holds(a, env)
    assert holds(op("==", a, b), env) != holds(op("!=", a, b), env)


@given(trees, environments)
def test_seen_is_what_the_tree_names(ast: dict[str, Any], env: dict[str, Any]) -> None:
    _, seen = evaluate(ast, env)
    named = set()
    pending = [ast]
    while pending:
        node = pending.pop()
        if "var" in node:
            named.add(node["var"])
        pending.extend(node[k] for k in ("arg", "left", "right") if k in node)
    assert set(seen) == named
    for name, value in seen.items():
        assert value == env.get(name, False if name == "pull_request.fork" else "")


@pytest.mark.parametrize(
    ("ast", "path", "fragment"),
    [
        ([], "", "a node is an object"),
        ({"str": 1}, "", "not a condition node"),
        ({"var": "branches"}, "var", "unknown variable 'branches'"),
        ({"var": "env.A.B"}, "var", "'env.' takes one name"),
        ({"op": "&&", "left": s("a")}, "", "not a condition node"),
        ({"op": "!", "arg": {"var": "nope"}}, "arg.var", "unknown variable"),
        (op("==", s("a"), {"op": "??", "arg": s("b")}), "right", "not a condition node"),
        ({"op": "==", "left": s("a"), "right": s("b"), "extra": 1}, "", "not a condition"),
    ],
)
def test_check_refuses_what_is_not_a_condition(ast: Any, path: str, fragment: str) -> None:
    with pytest.raises(ConditionError) as info:
        conditions.check(ast)
    assert info.value.path == path
    assert fragment in info.value.message


def test_check_refuses_a_tree_too_deep_without_recursing() -> None:
    ast: dict[str, Any] = s("x")
    for _ in range(100_000):
        ast = no(ast)
    with pytest.raises(ConditionError, match="nested more than 64 levels deep"):
        conditions.check(ast)


@pytest.mark.parametrize(
    ("ast", "text"),
    [
        (op("||", op("&&", v("branch"), v("tag")), v("event")), "branch && tag || event"),
        (op("&&", v("branch"), op("||", v("tag"), v("event"))), "branch && (tag || event)"),
        (op("&&", op("&&", v("tag"), v("tag")), v("tag")), "tag && tag && tag"),
        (op("&&", v("tag"), op("&&", v("tag"), v("tag"))), "tag && (tag && tag)"),
        (no(op("==", v("branch"), s("it's"))), "!(branch == 'it''s')"),
        (no(no(v("tag"))), "!!tag"),
        (no(op("||", v("tag"), {"bool": True})), "!(tag || true)"),
        (op("==", op("==", v("tag"), s("")), {"bool": False}), "(tag == '') == false"),
    ],
)
def test_source_writes_only_the_parentheses_needed(ast: dict[str, Any], text: str) -> None:
    assert conditions.source(ast) == text
