"""`otto fmt`: the canonical style with every comment kept where it was.

Property tests over Ottofiles with comments between any two tokens: formatting is
stable, keeps the multiset of comment texts and the model, and keeps the comments in
their order when the file's parts already stand in the canonical order.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parserkit import VALID, models, normalise

from otto.model import Pipeline
from otto.parser import ParseError, format_ottofile, parse, render
from otto.parser.source import comment_spans, strip_comments

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "Ottofile"
COMMENTED = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A token of a comment-free Ottofile: a string (`''` inside is a quote), a word, a sign.
TOKEN = re.compile(
    r"'[^']*(?:''[^']*)*'|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
    r"|==|!=|=~|&&|\|\||[{}=:,!()\[\]]"
)


def comment_texts(text: str) -> list[str]:
    texts = [text[start:end] for start, end in comment_spans(text, "t")]
    return [t.rstrip() if t.startswith("//") else t for t in texts]


def test_the_example_keeps_its_header_comment() -> None:
    formatted = format_ottofile(EXAMPLE.read_text())
    assert formatted.startswith(
        "// An example pipeline: a build stage, tests side by side, then a package stage.\n"
        "pipeline {\n"
    )
    assert render(parse(formatted)) == render(parse(EXAMPLE.read_text()))


def test_fmt_write_keeps_every_comment(tmp_path: Path) -> None:
    path = tmp_path / "Ottofile"
    path.write_text(
        "// the header\n"
        "pipeline { stage { name = 'Build' // the name\n"
        "steps { /* before */ sh 'make' } } }\n"
        "/* the end */"
    )
    done = subprocess.run(
        [sys.executable, "-m", "otto.cli", "fmt", "--write", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert path.read_text() == (
        "// the header\n"
        "pipeline {\n"
        "    stage {\n"
        "        name = 'Build' // the name\n"
        "        steps { /* before */\n"
        "            sh 'make'\n"
        "        }\n"
        "    }\n"
        "}\n"
        "/* the end */\n"
    )


def test_an_invalid_file_is_refused_where_it_is_wrong(tmp_path: Path) -> None:
    path = tmp_path / "Ottofile"
    path.write_text("// kept\npipeline { stage { nmae = 'x' steps { sh 'a' } } }\n")
    done = subprocess.run(
        [sys.executable, "-m", "otto.cli", "fmt", "--write", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"{path}:2:20: unknown stage property 'nmae'")
    assert path.read_text().startswith("// kept\n")


PLACES = [
    (  # trailing comments stay on their line; a comment before '}' ends the block's content
        "pipeline {\n steps { sh 'a' /* t */ // u\n // last step\n } // after\n}",
        "pipeline {\n    steps {\n        sh 'a' /* t */ // u\n        // last step\n"
        "    } // after\n}\n",
    ),
    (  # a line comment between arguments: the rest of the step continues below it
        "pipeline { steps { git url: 'u', // the repository\n branch: 'b' } }",
        "pipeline {\n    steps {\n        git url: 'u', // the repository\n"
        "            branch: 'b'\n    }\n}\n",
    ),
    (  # a comment on a line of its own between arguments keeps a line of its own
        "pipeline { steps { sh 'a',\n // the second\n 'b' } }",
        "pipeline {\n    steps {\n        sh 'a',\n            // the second\n"
        "            'b'\n    }\n}\n",
    ),
    (  # inside a block, within a step, before a keyword's value
        "pipeline { steps { dir 'x' { /*in*/ sh /* a */ 'y' } } }",
        "pipeline {\n    steps {\n        dir 'x' { /*in*/\n            sh /* a */ 'y'\n"
        "        }\n    }\n}\n",
    ),
    (  # a multi-line block comment is kept as it is written
        "pipeline {\n/* one\n   two */\n steps { sh 'a' } }",
        "pipeline {\n    /* one\n   two */\n    steps {\n        sh 'a'\n    }\n}\n",
    ),
    (  # a runtime block becomes properties; its comments stay by them
        "pipeline { stage { runtime { // the box\n docker { image = 'i' /* x */ } }\n"
        " steps { sh 'a' } } }",
        "pipeline {\n    stage { // the box\n        image = 'i' /* x */\n        steps {\n"
        "            sh 'a'\n        }\n    }\n}\n",
    ),
    (  # an environment written first is written after the properties, its comments with it
        "pipeline { stage {\n environment { A = 'b' } // env\n // the name\n name = 'n'\n"
        " steps { sh 'a' } } }",
        "pipeline {\n    stage {\n        // the name\n        name = 'n'\n        environment {\n"
        "            A = 'b'\n        } // env\n        steps {\n            sh 'a'\n"
        "        }\n    }\n}\n",
    ),
    (  # an empty group
        "pipeline { fanout { // none yet\n } }",
        "pipeline {\n    fanout { // none yet\n    }\n}\n",
    ),
]


@pytest.mark.parametrize(("source", "expected"), PLACES)
def test_comments_stay_in_place(source: str, expected: str) -> None:
    formatted = format_ottofile(source)
    assert formatted == expected
    assert format_ottofile(formatted) == formatted


def test_a_file_without_comments_is_the_canonical_rendering() -> None:
    for path in VALID:
        text = path.read_text()
        if not comment_spans(text, path.name):
            assert format_ottofile(text) == render(parse(text))


def test_errors_are_parse_errors() -> None:
    with pytest.raises(ParseError, match="unterminated comment"):
        format_ottofile("pipeline { /* steps { sh 'a' } }")


# -- property tests ---------------------------------------------------------------------

COMMENT_WORDS = st.text("abc XYZ 019-_.'\"{}:=,", max_size=12)


@st.composite
def comment(draw: st.DrawFn, serial: int) -> tuple[str, str]:
    """(what is inserted, the comment's text): unique by their serial number."""
    words = f"c{serial} {draw(COMMENT_WORDS)}".rstrip()
    kind = draw(st.sampled_from(["line", "block", "multi-line", "nested"]))
    if kind == "line":
        text = f"// {words}"
        return f"{draw(st.sampled_from([' ', '', chr(10)]))}{text}\n", text
    text = {
        "block": f"/* {words} */",
        "multi-line": f"/* {words}\n   more */",
        "nested": f"/* {words} /* inner */ */",
    }[kind]
    return f"{draw(st.sampled_from([' ', chr(10), chr(10) + '  ']))}{text} ", text


@st.composite
def commented(draw: st.DrawFn, base: str) -> tuple[str, list[str]]:
    """`base` (comment-free) with comments drawn into gaps between its tokens."""
    gaps = [0] + [m.end() for m in TOKEN.finditer(base)]
    chosen = draw(st.lists(st.sampled_from(gaps), min_size=1, max_size=8))
    inserted: dict[int, list[str]] = {}
    texts: list[str] = []
    for serial, gap in enumerate(sorted(chosen)):
        raw, text = draw(comment(serial))
        inserted.setdefault(gap, []).append(raw)
        texts.append(text)
    out, last = [], 0
    for gap in sorted(inserted):
        out += [base[last:gap], *inserted[gap]]
        last = gap
    out.append(base[last:])
    return "".join(out), texts


def check(text: str, expected_comments: list[str], in_order: bool) -> str:
    formatted = format_ottofile(text)
    assert format_ottofile(formatted) == formatted
    assert Counter(comment_texts(formatted)) == Counter(expected_comments)
    if in_order:
        assert comment_texts(formatted) == expected_comments
    assert normalise(parse(formatted)) == normalise(parse(text))
    return formatted


@COMMENTED
@given(st.data(), models)
def test_random_pipelines_with_comments_anywhere(data: st.DataObject, pipeline: Pipeline) -> None:
    canonical = render(pipeline)
    text, texts = data.draw(commented(canonical))
    check(text, texts, in_order=True)


CORPUS = [strip_comments(path.read_text(), path.name) for path in VALID]


@COMMENTED
@given(st.data(), st.sampled_from(CORPUS))
def test_corpus_files_with_comments_anywhere(data: st.DataObject, base: str) -> None:
    # The corpus is laid out every which way, and not always in the canonical order.
    text, texts = data.draw(commented(base))
    check(text, texts, in_order=False)
