"""ParseError's shape, encodings and line ends, and pathological input in bounded time."""

from __future__ import annotations

import contextlib
import pickle
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from parserkit import normalise

from otto.model import Pipeline, check_invariants
from otto.parser import MAX_BLOCK_DEPTH, ParseError, parse, render

BOUND = 10.0  # seconds; generous for a slow, shared CI machine


def error_of(text: str | bytes) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(text, "Ottofile")
    return info.value


def timed(work: Callable[[], object]) -> float:
    """The CPU seconds `work` took: what a blow-up shows in, whatever else the (shared,
    parallel-testing) machine is doing meanwhile."""
    start = time.process_time()
    with contextlib.suppress(ParseError):
        work()
    return time.process_time() - start


def test_error_renders_file_line_column_message_excerpt_and_caret() -> None:
    error = error_of("pipeline {\n    steps {\n        sh 'ls'\n        }\n    }\n}\n")
    assert (error.filename, error.line, error.column) == ("Ottofile", 6, 1)
    assert error.expected == ["the end of the file"]
    assert error.excerpt == "}"
    assert str(error) == (
        "Ottofile:6:1: expected the end of the file, found '}' (this '}' closes nothing)\n}\n^"
    )


def test_expected_is_said_in_words() -> None:
    error = error_of("pipeline { steps { sh 'ls' } stage { steps { sh 'x' } } bogus }")
    assert error.expected == [
        "'stage'", "'steps'", "'parallel'", "'fanout'", "'each'", "'notify'", "'}'"
    ]  # fmt: skip
    assert error.message == (
        "expected 'stage', 'steps', 'parallel', 'fanout', 'each', 'notify' or '}', found 'bogus'"
    )
    error = error_of("pipeline {\n    steps {\n        sh 'ls'\n        = 'x'\n    }\n}")
    assert error.message.startswith(
        "expected a string, a keyword argument (name: 'value'), ',', '{', a step name or '}'"
    )


def test_empty_steps_message() -> None:
    error = error_of("pipeline { steps {} }")
    assert error.message == (
        "expected a step name, found '}' (the 'steps' block needs at least one step)"
    )
    assert error.expected == ["a step name"]


def test_caret_keeps_tabs_so_it_lines_up() -> None:
    error = error_of("pipeline {\n\tsteps {\n\t\tsh\t'x' =\n\t}\n}")
    assert (error.line, error.column) == (3, 10)
    assert str(error).split("\n")[1:] == ["\t\tsh\t'x' =", "\t\t  \t    ^"]


def test_long_line_is_shown_as_a_window_around_the_column() -> None:
    text = "pipeline { steps { sh '" + "x" * 5000 + "' @ } }"
    error = error_of(text)
    assert error.column == len("pipeline { steps { sh '") + 5000 + 3
    _, shown, caret = str(error).split("\n")
    assert len(shown) < 200 and shown.startswith("…")
    assert shown[len(caret) - 1] == "@"


def test_control_characters_are_not_printed_raw() -> None:
    error = error_of("pipeline { steps { sh 'x' \x00 } }")
    assert error.message.endswith("found U+0000")
    assert "\x00" not in str(error)


def test_error_pickles_and_has_a_json_shape() -> None:
    error = error_of("pipeline {")
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error)
    assert error.to_dict() == {
        "filename": "Ottofile",
        "line": 1,
        "column": 10,
        "message": "unclosed '{' (opened here): the 'pipeline' block has no matching '}'",
        "expected": ["'}'"],
    }


def test_default_filename() -> None:
    with pytest.raises(ParseError) as info:
        parse("")
    assert str(info.value).startswith("<string>:1:1: expected 'pipeline'")


def test_unclosed_brace_is_reported_where_it_opens_not_at_the_end() -> None:
    text = "pipeline {\n    stage {\n        steps { sh 'a' }\n" + "\n" * 50
    error = error_of(text)
    assert (error.line, error.column) == (2, 11)
    assert error.message.startswith("unclosed '{' (opened here): the 'stage' block")


def test_unterminated_string_is_reported_where_it_opens() -> None:
    for text in ("pipeline { steps { sh 'oops } }\n\n\n", "pipeline { steps { sh 'oops } } // x"):
        error = error_of(text)
        assert (error.line, error.column, error.message) == (1, 23, "unterminated string")


# -- encodings and line ends


def test_non_utf8_points_at_the_first_bad_byte_in_characters() -> None:
    data = "pipeline {\n  steps { echo 'é✓".encode() + b"\xff\xfe' }\n}\n"
    error = error_of(data)
    assert (error.line, error.column) == (2, 19)
    assert error.message.startswith("invalid UTF-8 byte 0xff")
    assert error.excerpt.startswith("  steps { echo 'é✓")


def test_truncated_utf8_sequence_at_the_end() -> None:
    error = error_of(b"pipeline {}" + "é".encode()[:1])
    assert (error.line, error.column) == (1, 12)


def test_bom_and_crlf_line_ends() -> None:
    text = "pipeline {\r\n  steps {\r\n    sh 'one\r\ntwo\rthree'\r\n  }\r\n}\r\n"
    pipeline = parse(b"\xef\xbb\xbf" + text.encode())
    assert pipeline.batches[0].contexts[0].steps[0].parameters == ["one\ntwo\nthree"]
    error = error_of("pipeline {\r\n  steps {\r\n    sh @\r\n  }\r\n}\r\n")
    assert (error.line, error.column, error.excerpt) == (3, 8, "    sh @")


def test_bytes_and_str_give_the_same_model() -> None:
    text = "pipeline { stage { name = 'ü' steps { sh 'x' } } }"
    assert normalise(parse(text)) == normalise(parse(text.encode()))


# -- block nesting


def nested(depth: int) -> str:
    return "pipeline { steps { " + "dir 'd' { " * depth + "sh 'x' " + "} " * depth + "} }"


def test_blocks_nest_up_to_the_limit() -> None:
    pipeline = parse(nested(MAX_BLOCK_DEPTH))
    check_invariants(pipeline)
    assert normalise(parse(render(pipeline))) == normalise(pipeline)
    error = error_of(nested(MAX_BLOCK_DEPTH + 1))
    assert "nested too deeply" in error.message


# -- pathological input: a clean result or a ParseError, in bounded time


# A dense file costs what lark costs per token (about 60,000 lines/s here, see
# bench/parse.py), so a dense 10 MB file takes some 25 s: linear, but too slow
# for the suite. The dense cases here are 1 MB; the 10 MB cases below are the
# shapes a tokeniser can take in big strides.
MB = 1024 * 1024


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: "pipeline { steps { " + "sh 'x'\n" * (MB // 7), id="1mb-unclosed"),
        pytest.param(
            lambda: (
                "pipeline { steps { sh 'a' } stage { name = 'x' steps { sh 'b' } } " * (MB // 64)
                + "}"
            ),
            id="1mb-repeated-pipelines",
        ),
        pytest.param(lambda: "/*" * 5000, id="5000-nested-unclosed-comments"),
        pytest.param(lambda: "/* " * 5000 + "*/ " * 5000 + "pipeline {}", id="5000-nested-closed"),
        pytest.param(
            lambda: "pipeline { /*" + "/*" * 5000 + "*/" * 5000 + "*/ }", id="nested-inside"
        ),
        pytest.param(lambda: "{" * 100_000, id="100k-braces"),
        pytest.param(lambda: "pipeline {" + " steps {" * 100_000, id="100k-open-steps"),
        pytest.param(lambda: nested(20_000), id="20k-nested-blocks"),
        pytest.param(lambda: "pipeline { steps { " + "dir 'd' { " * 20_000, id="20k-open-blocks"),
        pytest.param(lambda: "'" * 1_000_001, id="1M-quotes"),
    ],
)
def test_pathological_input_is_bounded(make: Callable[[], str]) -> None:
    text = make()
    assert timed(lambda: parse(text)) < BOUND


def test_5000_nested_unclosed_comments_report_the_outermost() -> None:
    error = error_of("pipeline {\n  " + "/*" * 5000 + "\n}")
    assert (error.line, error.column) == (2, 3)
    assert "unterminated comment" in error.message and "4999 nested" in error.message


def test_5000_nested_closed_comments_are_whitespace() -> None:
    pipeline = parse("/*" * 5000 + "*/" * 5000 + "pipeline { steps { sh 'x' } }")
    assert pipeline.batches[0].contexts[0].steps[0].parameters == ["x"]


TEN_MB = 10 * 1024 * 1024


def test_10mb_string_parses_in_bounded_time() -> None:
    script = ("echo 'a line of a long script' && \\\n" * (TEN_MB // 36 + 1))[:TEN_MB]
    text = "pipeline { steps { sh '" + script.replace("'", "''") + "' } }"
    result: list[Pipeline] = []
    assert timed(lambda: result.append(parse(text))) < BOUND
    assert result[0].batches[0].contexts[0].steps[0].parameters == [script]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(
            lambda: "// a comment line, repeated\n" * (TEN_MB // 28 + 1) + "pipeline {}",
            id="comments",
        ),
        pytest.param(lambda: "/*" + "x" * TEN_MB + "*/ pipeline {}", id="one-comment"),
        pytest.param(lambda: "pipeline {" + " " * TEN_MB + "}", id="whitespace"),
        pytest.param(lambda: "pipeline { steps { sh '" + "x" * TEN_MB, id="unterminated-string"),
        pytest.param(lambda: "/*" + "x" * TEN_MB, id="unterminated-comment"),
        pytest.param(lambda: "x" * TEN_MB, id="one-identifier"),
        pytest.param(lambda: "pipeline { steps { sh 'x' " * (TEN_MB // 25), id="repeated-open"),
    ],
)
def test_10mb_input_is_bounded(make: Callable[[], str]) -> None:
    text = make()
    assert len(text) >= TEN_MB
    assert timed(lambda: parse(text)) < BOUND


def test_10mb_of_random_bytes_is_a_clean_error() -> None:
    data = random.Random(2).randbytes(TEN_MB)
    error = error_of(data)
    assert error.line >= 1 and error.column >= 1


def test_parsing_from_threads() -> None:
    text = (
        "pipeline { parallel { stage { name = 'a' steps { sh 'a' dir 'x' { sh 'y' } } } "
        "stage { name = 'b' steps { sh 'b' } } } }"
    )
    expected = normalise(parse(text))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: normalise(parse(text)), range(200)))
    assert all(result == expected for result in results)


def test_lone_surrogate_in_str_input_is_an_error() -> None:
    error = error_of("pipeline {\n  steps { sh '\ud800' }\n}")
    assert (error.line, error.column, error.message) == (2, 15, "invalid character U+D800")


def test_only_text_is_accepted() -> None:
    with pytest.raises(TypeError):
        parse(None)  # type: ignore[arg-type]
