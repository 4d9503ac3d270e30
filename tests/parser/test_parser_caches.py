"""`cache { NAME = ['path/'] use NAME key = 'file' }`: the context's `cache` (absent from
its JSON when the stage has none) and the `cache-restore`/`cache-save` steps around the
stage's own; a bad block is an error where it stands; `otto fmt` and `otto explain`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from otto.model import Pipeline
from otto.parser import ParseError, parse
from otto.parser.fmt import format_ottofile

CACHING = """pipeline {
    stage {
        name = 'deps'
        cache {
            use pip // restored first
            pip = ['.cache/pip/', 'venv']
            key = 'requirements.txt'
        }
        steps { sh 'pip install -r requirements.txt' }
    }
    stage {
        cache { use pip  use gems }
        steps { sh 'make test' }
    }
    stage { steps { sh 'make' } }
}
"""


def test_the_block_becomes_the_cache_and_steps_around_the_stage() -> None:
    pipeline = parse(CACHING)
    deps, tests, plain = pipeline.contexts()
    assert deps.cache is not None and deps.cache.use == ["pip"]
    assert deps.cache.save == {"pip": [".cache/pip/", "venv"]}
    assert deps.cache.key == ["requirements.txt"]
    assert [s.symbol for s in deps.steps] == ["cache-restore", "sh", "cache-save"]
    assert deps.steps[0].parameters == {"name": "pip", "key": "requirements.txt"}
    assert deps.steps[2].parameters == {
        "name": "pip",
        "paths": ".cache/pip/\nvenv",
        "key": "requirements.txt",
    }
    assert [s.symbol for s in tests.steps] == ["cache-restore", "cache-restore", "sh"]
    assert all(step.context == deps.uuid for step in deps.steps)
    data = pipeline.to_dict()
    assert "cache" not in data["batches"][2]["contexts"][0]
    assert Pipeline.model_validate(data).batches[0].contexts[0].cache == deps.cache
    assert plain.cache is None


@pytest.mark.parametrize(
    ("written", "column", "message"),
    [
        ("cache { pip = '../up' }", 34, "cache path '../up' must be inside the workspace"),
        ("cache { pip = ['a', '/etc'] }", 40, "cache path '/etc' must be inside the workspace"),
        ("cache { pip = 'a' pip = 'b' }", 38, "cache 'pip' is saved twice in this block"),
        ("cache { use a use a }", 38, "cache 'a' is used twice in this block"),
        ("cache { }", 20, "a 'cache' block names caches"),
        ("cache { use a } cache { use b }", 36, "a stage has at most one 'cache' block"),
        ("cache { use }", 32, "expected a property name"),
    ],
)
def test_a_bad_block_is_an_error_where_it_stands(written: str, column: int, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(f"pipeline {{ stage {{ {written} steps {{ sh 'a' }} }} }}")
    assert (info.value.line, info.value.column) == (1, column), info.value.message
    assert info.value.message.startswith(message)


def test_fmt_round_trips_without_repeating_the_steps() -> None:
    formatted = format_ottofile(CACHING)
    assert "            use pip // restored first\n" in formatted
    assert "            pip = ['.cache/pip/', 'venv']\n" in formatted
    assert "cache-" not in formatted
    again = parse(formatted)
    assert [s.symbol for s in again.batches[0].contexts[0].steps] == [
        "cache-restore",
        "sh",
        "cache-save",
    ]
    assert format_ottofile(formatted) == formatted


def test_a_step_or_property_may_still_be_called_cache() -> None:
    pipeline = parse("pipeline { stage { steps { cache 'x' } } }")
    assert pipeline.batches[0].contexts[0].steps[0].symbol == "cache"


def test_explain_shows_the_caches_and_their_steps(tmp_path: Path) -> None:
    path = tmp_path / "Ottofile"
    path.write_text(CACHING)
    done = subprocess.run(
        [sys.executable, "-m", "otto.cli", "explain", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "    cache: restores pip; saves pip (.cache/pip/, venv), keyed by requirements.txt\n"
        in done.stdout
    )
    assert '1. cache-restore name="pip", key="requirements.txt"' in done.stdout
