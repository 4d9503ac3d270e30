"""`credentials = ['npm-token', …]`: a stage's list of credential names, in the model's
context (absent from its JSON when there are none); a bad one is an error where it
stands; `otto fmt` keeps it, comments and all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from otto.model import Pipeline
from otto.parser import ParseError, parse, render
from otto.parser.fmt import format_ottofile

ASKING = """pipeline {
    stage {
        name = 'deploy'
        // what it may use
        credentials = ['npm-token', 'deploy.key', 'npm-token']
        steps { sh 'make deploy' }
    }
    stage { steps { sh 'make' } }
}
"""


def test_the_names_reach_the_context_and_only_its_json() -> None:
    pipeline = parse(ASKING)
    asking = pipeline.batches[0].contexts[0]
    assert asking.credentials == ["npm-token", "deploy.key"]  # once each
    assert "credentials" not in asking.properties
    data = pipeline.to_dict()
    assert data["batches"][0]["contexts"][0]["credentials"] == ["npm-token", "deploy.key"]
    assert "credentials" not in data["batches"][1]["contexts"][0]
    assert Pipeline.model_validate(data).batches[0].contexts[0].credentials == asking.credentials


@pytest.mark.parametrize(
    ("written", "column", "message"),
    [
        ("credentials = 'npm'", 45, "credentials: a list of names, e.g. ['npm-token']"),
        ("credentials = ['a b']", 46, "credentials: 'a b' is not a name"),
        ("credentials = ['.hidden']", 46, "credentials: '.hidden' is not a name"),
        ("name = ['x']", 31, "name: a string, not a list"),
    ],
)
def test_a_bad_list_is_an_error_where_it_stands(written: str, column: int, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(f"pipeline {{ stage {{ name = 'x' {written} steps {{ sh 'a' }} }} }}")
    assert (info.value.line, info.value.column) == (1, column)
    assert info.value.message.startswith(message)


def test_fmt_keeps_the_list_and_its_comment() -> None:
    formatted = format_ottofile(ASKING)
    assert "        // what it may use\n" in formatted
    assert "        credentials = ['npm-token', 'deploy.key']\n" in formatted
    assert parse(formatted).batches[0].contexts[0].credentials == ["npm-token", "deploy.key"]


def test_explain_names_them(tmp_path: Path) -> None:
    path = tmp_path / "Ottofile"
    path.write_text(ASKING)
    done = subprocess.run(
        [sys.executable, "-m", "otto.cli", "explain", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "    credentials: npm-token, deploy.key\n" in done.stdout
    assert done.stdout.count("credentials") == 1


def test_a_stage_with_only_credentials_renders_as_a_stage() -> None:
    model = parse("pipeline {\n  stage {\n    credentials = ['npm-token']\n"
                  "    steps { sh 'true' }\n  }\n}\n")  # fmt: skip
    assert model.batches[0].contexts[0].properties == {}
    again = parse(render(model))
    assert again.batches[0].contexts[0].credentials == ["npm-token"]
