"""Hypothesis strategies for the parser tests: random pipeline models, strings full of
what a lexer could trip on."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from otto.model import load, new_uuid
from otto.parser.build import STAGE_PROPERTIES, TIMEOUT

KEYWORDS = ["pipeline", "stage", "steps", "parallel", "fanout", "environment", "block"]
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
TAIL = st.text(LETTERS + "0123456789_", max_size=8)
identifiers = st.one_of(
    st.builds(str.__add__, st.sampled_from(LETTERS), TAIL), st.sampled_from(KEYWORDS)
)
# Any property but a timeout, whose value must be a duration.
property_names = st.sampled_from([p for p in STAGE_PROPERTIES if p != TIMEOUT])
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


@st.composite
def context(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "properties": draw(st.dictionaries(property_names, strings, max_size=3)),
        "environment": draw(st.dictionaries(env_names, strings, max_size=3)),
        "steps": draw(steps(2)),
    }


batch = st.one_of(
    st.builds(lambda c: {"mode": "Linear", "contexts": [c]}, context()),
    st.builds(
        lambda mode, cs: {"mode": mode, "contexts": cs},
        st.sampled_from(["Parallel", "Fanout"]),
        st.lists(context(), max_size=2),
    ),
)


def with_uuids(data: dict[str, Any]) -> dict[str, Any]:
    """Give the drawn model fresh uuids and correct `context` fields."""

    def fill(step: dict[str, Any], owner: str) -> None:
        step["uuid"], step["context"] = new_uuid(), owner
        parameters = step["parameters"]
        for value in parameters.values() if isinstance(parameters, dict) else parameters:
            if isinstance(value, list):
                for inner in value:
                    fill(inner, owner)

    data["uuid"] = new_uuid()
    for b in data["batches"]:
        for c in b["contexts"]:
            c["uuid"] = new_uuid()
            for s in c["steps"]:
                fill(s, c["uuid"])
    return data


models = st.builds(lambda bs: load(with_uuids({"batches": bs})), st.lists(batch, max_size=3))
