"""A stage's properties are a known few: any other name is an error where it stands,
suggesting the nearest known one, wherever an Ottofile is read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from otto.parser import ParseError, parse
from otto.parser.build import STAGE_PROPERTIES

TYPO = "pipeline {\n    stage {\n        nmae = 'Build'\n        steps { sh 'make' }\n    }\n}\n"


@pytest.mark.parametrize(
    ("written", "meant"),
    [("nmae", "name"), ("imgae", "image"), ("lables", "labels"), ("timout", "timeout")],
)
def test_a_misspelt_property_suggests_the_right_one(written: str, meant: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(f"pipeline {{ stage {{ {written} = 'x' steps {{ sh 'a' }} }} }}", "Ottofile")
    error = info.value
    assert (error.line, error.column) == (1, 20)
    assert error.message.startswith(
        f"unknown stage property '{written}' (did you mean '{meant}'?); "
        "a stage's properties are name, runtime, arch, labels, image, cpus, memory"
    )
    assert error.expected == [f"'{name}'" for name in STAGE_PROPERTIES]


def test_a_property_like_no_other_gets_no_suggestion() -> None:
    with pytest.raises(ParseError) as info:
        parse("pipeline { parallel { stage { colour = 'red' steps { sh 'a' } } } }")
    assert info.value.message.startswith("unknown stage property 'colour'; ")


def test_every_known_property_parses() -> None:
    values = {"retry_on": "agent_lost"}  # '1m' is a duration, a name, a size, …
    settings = " ".join(f"{name} = '{values.get(name, '1m')}'" for name in STAGE_PROPERTIES)
    pipeline = parse(f"pipeline {{ stage {{ {settings} steps {{ sh 'a' }} }} }}")
    assert list(pipeline.batches[0].contexts[0].properties) == list(STAGE_PROPERTIES)


@pytest.mark.parametrize("command", ["parse", "explain", "run", "fmt"])
def test_every_command_refuses_it_at_file_line_column(tmp_path: Path, command: str) -> None:
    path = tmp_path / "Ottofile"
    path.write_text(TYPO)
    done = subprocess.run(
        [sys.executable, "-m", "otto.cli", command, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    header, excerpt, caret = done.stderr.splitlines()[:3]
    assert header.startswith(f"{path}:3:9: unknown stage property 'nmae' (did you mean 'name'?)")
    assert (excerpt, caret) == ("        nmae = 'Build'", "        ^")


def test_retry_on_names_only_failures_retried_automatically() -> None:
    stage = (
        "pipeline {\n  stage {\n    retry_on = 'agent_lost, exit_code'\n    steps { sh 'a' } } }"
    )
    with pytest.raises(ParseError) as info:
        parse(stage, "Ottofile")
    assert (info.value.line, info.value.column) == (3, 16)
    assert info.value.message == (
        "retry_on: 'exit_code' is not a failure retried automatically"
        " (agent_lost, provision_failed)"
    )
    for given in ("agent_lost", "provision_failed, agent_lost", ""):
        parsed = parse(f"pipeline {{ stage {{ retry_on = '{given}' steps {{ sh 'a' }} }} }}")
        assert parsed.batches[0].contexts[0].properties["retry_on"] == given
