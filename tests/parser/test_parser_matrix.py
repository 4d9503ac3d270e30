"""Matrices: `each(…) { stage { … } }` expands at parse time into one Parallel batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from otto.model import BatchMode, check_invariants
from otto.parser import ParseError, format_ottofile, parse, parse_syntax, render

ROOT = Path(__file__).resolve().parents[2]
MATRIX_EXAMPLE = ROOT / "examples" / "matrix.otto"

ONE_AXIS = """\
pipeline {
    each('win10', 'macos') {
        stage {
            name = concat('Test ', it)
            environment {
                TARGET = concat(it, '-release')
            }
            steps {
                sh concat('make test PLATFORM=', it), timeout: '5m'
                dir it {
                    echo it
                }
            }
        }
    }
}
"""

TWO_AXES = """\
pipeline {
    each(os: ['linux', 'mac'], py: ['3.11', '3.12']) {
        stage {
            name = concat(it.os, ' py', it.py)
            when { branch == 'main' }
            steps {
                sh concat('tox -e py', it.py)
            }
        }
    }
}
"""


def error_of(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(text)
    return info.value


def test_one_axis_gives_a_parallel_batch_with_a_context_per_value() -> None:
    pipeline = parse(ONE_AXIS)
    check_invariants(pipeline)
    [batch] = pipeline.batches
    assert batch.mode == BatchMode.PARALLEL
    assert [c.properties for c in batch.contexts] == [
        {"name": "Test win10"},
        {"name": "Test macos"},
    ]
    assert [c.environment for c in batch.contexts] == [
        {"TARGET": "win10-release", "OTTO_EACH": "win10"},
        {"TARGET": "macos-release", "OTTO_EACH": "macos"},
    ]
    first, second = (c.steps for c in batch.contexts)
    assert first[0].parameters == ["make test PLATFORM=win10"] and first[0].timeout == "5m"
    assert second[0].parameters == ["make test PLATFORM=macos"]
    assert second[1].parameters[0] == "macos"
    assert second[1].block_steps()[0].parameters == ["macos"]
    assert len({c.uuid for c in batch.contexts}) == 2


def test_two_axes_give_every_combination_with_its_gate() -> None:
    [batch] = parse(TWO_AXES).batches
    assert [c.name for c in batch.contexts] == [
        "linux py3.11",
        "linux py3.12",
        "mac py3.11",
        "mac py3.12",
    ]
    assert batch.contexts[2].environment == {"OTTO_EACH_OS": "mac", "OTTO_EACH_PY": "3.11"}
    assert batch.contexts[3].steps[0].parameters == ["tox -e py3.12"]
    conditions = [c.gate.condition.source for c in batch.contexts if c.gate and c.gate.condition]
    assert conditions == ["branch == 'main'"] * 4
    assert batch.contexts[0].gate is not batch.contexts[1].gate


def test_concat_of_strings_works_outside_each_and_values_inline_with_steps() -> None:
    pipeline = parse("pipeline {\n steps {\n  sh concat('a', 'b')\n  dir 'x' { sh 'y' }\n }\n}")
    assert [s.parameters[0] for s in pipeline.batches[0].contexts[0].steps] == ["ab", "x"]


def test_a_step_named_it_or_concat_stays_a_step() -> None:
    text = "pipeline {\n  steps {\n    sh 'a'\n    it 'b'\n    it x: 'c'\n    concat 'd'\n  }\n}"
    steps = parse(text).batches[0].contexts[0].steps
    assert [(s.symbol, s.parameters) for s in steps] == [
        ("sh", ["a"]),
        ("it", ["b"]),
        ("it", {"x": "c"}),
        ("concat", ["d"]),
    ]
    rendered = render(parse(text))
    assert render(parse(rendered)) == rendered


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        (
            "pipeline {\n  stage {\n    name = it\n    steps { sh 'x' } } }",
            (3, 12),
            "'it' is only defined inside an 'each' block",
        ),
        ("pipeline {\n  steps {\n    sh concat('x', it) } }", (3, 20), "only defined inside"),
        (
            "pipeline {\n  each('a', 'b') {\n    stage { name = 'Test' steps { sh it } } } }",
            (2, 3),
            "this 'each' gives two contexts the name 'Test' (it='a' and it='b')",
        ),
        (
            "pipeline {\n  each(os: ['l'], py: ['1', '2']) {\n"
            "    stage { name = it.os steps { sh 'x' } } } }",
            (2, 3),
            "the name 'l' (it.os='l', it.py='1' and it.os='l', it.py='2')",
        ),
        (
            "pipeline {\n  each(os: ['l']) {\n    stage { name = it.py steps { sh 'x' } } } }",
            (3, 20),
            "'it.py' is not defined here (use it.os)",
        ),
        (
            "pipeline {\n  each(os: ['l']) {\n    stage { name = it steps { sh 'x' } } } }",
            (3, 20),
            "this 'each' has named axes: write it.os",
        ),
        (
            "pipeline {\n  each('a', 'a') { stage { name = it steps { sh 'x' } } } }",
            (2, 13),
            "'a' is listed twice",
        ),
        (
            "pipeline {\n  each(os: []) { stage { steps { sh 'x' } } } }",
            (2, 8),
            "axis 'os' needs at least one value",
        ),
        (
            "pipeline {\n  each('a') { stage { steps { sh 'x' } }\n"
            "  stage { steps { sh 'y' } } } }",
            (3, 3),
            "an 'each' block holds exactly one stage",
        ),
        (
            "pipeline {\n  each('a') {\n    stage { environment { OTTO_EACH = 'x' } "
            "steps { sh 'x' } } } }",
            (2, 3),
            "'each' sets 'OTTO_EACH'",
        ),
        (
            "pipeline {\n  each {\n    stage { steps { sh 'x' } } } }",
            (2, 3),
            "'each' takes its values in parentheses",
        ),
        (
            "pipeline {\n  each('a') {\n    stage { timeout = it steps { sh 'x' } } } }",
            (3, 23),
            "a duration is a plain string",
        ),
        ("use { nothing }\npipeline { steps { sh 'x' } }", (1, 7), "unknown step library"),
        (
            "pipeline {\n  each('a') {\n    stage { steps { sh it 'b' } } } }",
            (3, 24),
            "after 'it', another argument needs its comma: sh it, 'x'",
        ),
        (
            "pipeline {\n  steps {\n    sh concat('a' 'b') } }",
            (3, 8),
            "concat(…) takes strings and 'it' or 'it.AXIS', separated by commas",
        ),
    ],
)
def test_errors_point_at_line_and_column(text: str, where: tuple[int, int], fragment: str) -> None:
    error = error_of(text)
    assert (error.line, error.column) == where, error.message
    assert fragment in error.message


def test_fmt_keeps_the_each_form_and_its_comments() -> None:
    source = (
        "use { stdlib }\npipeline {\n  each('a', 'b') { // platforms\n"
        "    stage { name = concat('T ', it) /* per value */ steps { sh it } }\n  }\n}\n"
    )
    formatted = format_ottofile(source)
    assert formatted == (
        "use {\n    stdlib\n}\npipeline {\n    each('a', 'b') { // platforms\n"
        "        stage {\n            name = concat('T ', it) /* per value */\n"
        "            steps {\n                sh it\n            }\n        }\n    }\n}\n"
    )
    assert format_ottofile(formatted) == formatted
    for text in (ONE_AXIS, TWO_AXES):
        assert format_ottofile(text) == text
    # Rendered without the file's syntax, the model is the expansion.
    assert render(parse(TWO_AXES)).count("stage {") == 4


def test_syntax_records_each_matrix_by_its_batch() -> None:
    _, _, syntax = parse_syntax("pipeline {\n steps { sh 'x' }\n" + TWO_AXES[11:])
    [(batch, matrix)] = syntax.matrices.items()
    assert batch == 1 and (matrix.line, matrix.column) == (3, 5)
    assert matrix.axes == {"os": ["linux", "mac"], "py": ["3.11", "3.12"]}
    assert matrix.bindings[1] == {"os": "linux", "py": "3.12"}


def otto(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "otto.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_the_matrix_example_parses_and_explains() -> None:
    parsed = otto("parse", str(MATRIX_EXAMPLE))
    assert parsed.returncode == 0, parsed.stderr
    batches = json.loads(parsed.stdout)["batches"]
    assert [b["mode"] for b in batches] == ["Linear", "Parallel", "Linear"]
    assert batches[0]["contexts"][0]["properties"]["image"] == "maven:3-eclipse-temurin-17"
    tests = batches[1]["contexts"]
    assert [c["properties"]["name"] for c in tests] == [
        "Test win10",
        "Test macos",
        "Test linux-jdk12",
        "Test linux-jdk8",
    ]
    assert tests[3]["properties"]["labels"] == "linux-jdk8"
    assert tests[3]["environment"] == {"OTTO_EACH": "linux-jdk8"}
    explained = otto("explain", str(MATRIX_EXAMPLE))
    assert explained.returncode == 0, explained.stderr
    lines = explained.stdout.splitlines()
    assert "  expanded from the 'each' at line 23, column 5" in lines
    at = lines.index("  context Test macos")
    assert lines[at + 1] == '    each: it="macos" (OTTO_EACH)'
    assert '    1. sh script="mvn -B test -Dplatform=macos"' in lines[at:]


def test_explain_shows_the_values_of_two_axes(tmp_path: Path) -> None:
    path = tmp_path / "Ottofile"
    path.write_text(TWO_AXES)
    done = otto("explain", str(path))
    assert done.returncode == 0, done.stderr
    line = '    each: it.os="mac" (OTTO_EACH_OS), it.py="3.12" (OTTO_EACH_PY)'
    assert line in done.stdout.splitlines()
