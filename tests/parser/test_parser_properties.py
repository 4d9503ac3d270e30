"""Property tests: random models round-trip through render and parse; fuzzed input
raises nothing but ParseError, each example within a time bound."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parser_helpers import VALID, normalise

from otto.model import Pipeline, check_invariants, load, new_uuid
from otto.parser import ParseError, parse, render

TIME_BOUND = 2.0  # seconds per example
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYWORDS = ["pipeline", "stage", "steps", "parallel", "fanout", "environment", "block"]
LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
TAIL = st.text(LETTERS + "0123456789_", max_size=8)
identifiers = st.one_of(
    st.builds(str.__add__, st.sampled_from(LETTERS), TAIL), st.sampled_from(KEYWORDS)
)
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
        "properties": draw(st.dictionaries(identifiers, strings, max_size=3)),
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


@MODELS
@given(models)
def test_render_then_parse_gives_the_same_model(pipeline: Pipeline) -> None:
    text = render(pipeline)
    again = parse(text)
    check_invariants(again)
    assert normalise(again) == normalise(pipeline)
    assert render(again) == text


def parse_only_parse_error(data: str | bytes) -> None:
    start = time.perf_counter()
    try:
        pipeline = parse(data, "fuzz")
    except ParseError as error:
        assert error.line >= 1 and error.column >= 1
        assert "internal parser error" not in error.message
        assert str(error).startswith(f"fuzz:{error.line}:{error.column}: ")
    else:
        # Whatever parses is a valid model that renders and parses back the same.
        check_invariants(pipeline)
        text = render(pipeline)
        assert normalise(parse(text)) == normalise(pipeline)
    assert time.perf_counter() - start < TIME_BOUND


CORPUS = [path.read_text(encoding="utf-8") for path in VALID]
edits = st.lists(
    st.tuples(
        st.sampled_from(["insert", "delete", "replace"]),
        st.floats(0, 1),
        st.one_of(tricky, st.characters(), st.sampled_from(KEYWORDS)),
    ),
    min_size=1,
    max_size=6,
)


def mutate(text: str, changes: list[tuple[str, float, str]]) -> str:
    for op, where, what in changes:
        at = int(where * len(text))
        if op == "insert":
            text = text[:at] + what + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + len(what) :]
        else:
            text = text[:at] + what + text[at + len(what) :]
    return text


@FUZZ
@given(st.sampled_from(CORPUS), edits)
def test_mutated_corpus_files_raise_only_parse_error(text: str, changes: Any) -> None:
    parse_only_parse_error(mutate(text, changes))


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_parse_error(data: bytes) -> None:
    parse_only_parse_error(data)
    parse_only_parse_error(b"pipeline { steps { sh '" + data)


tokens = st.one_of(
    tricky,
    identifiers,
    st.sampled_from(["'x'", "'a''b'", "name = 'n'", "url: 'u'", "sh 'x'", "/* c */", "// c\n"]),
)


@FUZZ
@given(st.lists(tokens, max_size=40))
def test_random_token_soup_raises_only_parse_error(soup: list[str]) -> None:
    parse_only_parse_error(" ".join(soup))
    parse_only_parse_error("pipeline { " + " ".join(soup))
