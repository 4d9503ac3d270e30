"""The corpus: every valid file gives its expected model, every invalid one its error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from parserkit import INVALID, VALID, error_path, expected_path, normalise

from otto.model import check_invariants, load
from otto.parser import ParseError, parse, render


def _name(path: Path) -> str:
    return path.stem


def test_corpus_is_complete() -> None:
    assert len(VALID) >= 15 and len(INVALID) >= 15
    assert all(expected_path(p).exists() for p in VALID)
    assert all(error_path(p).exists() for p in INVALID)


@pytest.mark.parametrize("path", VALID, ids=_name)
def test_valid_file_gives_expected_model(path: Path) -> None:
    pipeline = parse(path.read_bytes(), path.name)
    expected = yaml.safe_load(expected_path(path).read_text(encoding="utf-8"))
    assert normalise(pipeline) == expected
    # The fast-built model is exactly what validation of its own dump gives.
    check_invariants(pipeline)
    assert load(pipeline.to_dict()) == pipeline
    assert normalise(parse(path.read_text(encoding="utf-8"))) == expected


@pytest.mark.parametrize("path", VALID, ids=_name)
def test_valid_file_renders_and_parses_back(path: Path) -> None:
    pipeline = parse(path.read_bytes(), path.name)
    text = render(pipeline)
    again = parse(text)
    assert normalise(again) == normalise(pipeline)
    assert render(again) == text


def test_parses_get_fresh_uuids() -> None:
    text = (VALID[0].parent / "13_blocks.ottofile").read_text()
    first, second = parse(text), parse(text)
    assert first.uuid != second.uuid
    uuids = {c.uuid for c in first.contexts()} | {s.uuid for c in first.contexts() for s in c.steps}
    assert not uuids & ({c.uuid for c in second.contexts()} | {second.uuid})


@pytest.mark.parametrize("path", INVALID, ids=_name)
def test_invalid_file_gives_its_error(path: Path) -> None:
    where, fragment = error_path(path).read_text(encoding="utf-8").strip().split(": ", 1)
    line, column = (int(n) for n in where.split(":"))
    with pytest.raises(ParseError) as info:
        parse(path.read_bytes(), path.name)
    error = info.value
    assert (error.line, error.column) == (line, column), error.message
    assert fragment in error.message
    header, excerpt, caret = str(error).split("\n")
    assert header == f"{path.name}:{line}:{column}: {error.message}"
    source_lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
    assert excerpt == (source_lines[line - 1] if line <= len(source_lines) else "")
    assert caret.endswith("^") and len(caret) == column
