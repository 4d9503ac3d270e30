"""Stage and step timeouts: `timeout = '10m'` on a stage, `timeout: '30s'` on any step."""

from __future__ import annotations

import json

import pytest

from otto.duration import parse_duration
from otto.model import ModelError, load
from otto.parser import ParseError, parse, render
from otto.steps.explain import explain_lines
from otto.steps.manifest import standard_manifests

TIMED = """\
pipeline {
    stage {
        name = 'Build'
        timeout = '1h30m'
        steps {
            sh 'make', timeout: '30s'
            sh script: 'make test', timeout: '10m'
            dir 'dist', timeout: '1m' {
                sh 'tar czf ../app.tgz .', timeout: '5s'
            }
            sh 'make install'
        }
    }
}
"""


def error_of(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(text, "Ottofile")
    return info.value


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("10m", 600), ("1h", 3600), ("1h30m", 5400), ("1.5m", 90), ("90", 90)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "10x", "soon", "1m1h", "-5s", "inf", "1e3"])
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_stage_and_step_timeouts_are_in_the_model() -> None:
    context = parse(TIMED).batches[0].contexts[0]
    assert context.properties == {"name": "Build", "timeout": "1h30m"}
    make, test, package, install = context.steps
    assert (make.parameters, make.timeout) == (["make"], "30s")
    # A keyword `timeout:` is the step's own too, not one of its parameters.
    assert (test.parameters, test.timeout) == ({"script": "make test"}, "10m")
    assert package.timeout == "1m"
    assert package.block_steps()[0].timeout == "5s"
    assert install.timeout is None


def test_an_unset_timeout_is_left_out_of_the_json() -> None:
    steps = parse(TIMED).to_dict()["batches"][0]["contexts"][0]["steps"]
    assert [step.get("timeout") for step in steps] == ["30s", "10m", "1m", None]
    assert "timeout" not in steps[3]  # the original Otto's shape, unchanged
    assert steps[2]["parameters"][1][0]["timeout"] == "5s"
    pipeline = parse(TIMED)
    assert load(json.loads(pipeline.to_json())) == pipeline


def test_fmt_writes_the_timeouts_back() -> None:
    assert render(parse(TIMED)) == TIMED


def test_a_bad_stage_timeout_is_an_error_at_its_value() -> None:
    error = error_of(TIMED.replace("'1h30m'", "'10 minutes'"))
    assert (error.line, error.column) == (4, 19)
    assert "'10 minutes' is not a duration" in error.message
    assert "30s, 10m, 1h or 1h30m" in error.message


def test_a_bad_step_timeout_is_an_error_at_its_value() -> None:
    error = error_of(TIMED.replace("timeout: '30s'", "timeout: 'soon'"))
    assert (error.line, error.column) == (6, 33)
    assert "timeout: 'soon' is not a duration" in error.message
    error = error_of(TIMED.replace("timeout: '5s'", "timeout: '0s'"))
    assert (error.line, error.column) == (9, 53)
    assert "more than zero" in error.message


def test_only_timeout_follows_positional_arguments() -> None:
    error = error_of(TIMED.replace("timeout: '30s'", "label: 'build'"))
    assert (error.line, error.column) == (6, 24)
    assert "only 'timeout:' may follow positional arguments, not 'label:'" in error.message


def test_a_model_with_a_bad_timeout_names_the_field() -> None:
    model = parse(TIMED).to_dict()
    model["batches"][0]["contexts"][0]["properties"]["timeout"] = "forever"
    with pytest.raises(ModelError) as info:
        load(model)
    assert info.value.path == "batches[0].contexts[0].properties.timeout"
    model = parse(TIMED).to_dict()
    model["batches"][0]["contexts"][0]["steps"][1]["timeout"] = "1 hour"
    with pytest.raises(ModelError) as info:
        load(model)
    assert info.value.path == "batches[0].contexts[0].steps[1].timeout"


def test_explain_shows_the_timeouts() -> None:
    lines = list(explain_lines(parse(TIMED), standard_manifests()))
    assert "    timeout = 1h30m" in lines
    assert '    1. sh script="make", timeout="30s"' in lines
