"""Property tests: random models round-trip through render and parse; fuzzed input
raises nothing but ParseError, each example within a time bound."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parserkit import KEYWORDS, VALID, identifiers, models, normalise, tricky

from otto.model import Pipeline, check_invariants
from otto.parser import ParseError, parse, render

TIME_BOUND = 2.0  # seconds per example
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MODELS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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
