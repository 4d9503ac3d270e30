"""Gates in the Ottofile: `when { … }`, `gates { enter { … } exit { … } }`, inputs and
their timeouts; the model they make, the errors at line and column, `otto fmt` and
`otto explain`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from parserkit import condition_asts

from otto import conditions
from otto.model import ModelError, load, loads
from otto.parser import ParseError, format_ottofile, parse, render

CORPUS_GATES = Path(__file__).parent / "corpus" / "valid" / "20_gates.ottofile"


def stage(gate_text: str) -> str:
    return (
        f"pipeline {{\n    stage {{\n        {gate_text}\n        steps {{ sh 'x' }}\n    }}\n}}\n"
    )


def gate_of(text: str) -> dict[str, Any]:
    gate: dict[str, Any] = parse(text).to_dict()["batches"][0]["contexts"][0]["gate"]
    return gate


def error_of(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(text, "Ottofile")
    return info.value


def test_when_is_a_condition_with_its_tree() -> None:
    gate = gate_of(stage("when { branch == 'main' && !(tag =~ 'v*') }"))
    assert gate == {
        "condition": {
            "source": "branch == 'main' && !(tag =~ 'v*')",
            "ast": {
                "op": "&&",
                "left": {"op": "==", "left": {"var": "branch"}, "right": {"str": "main"}},
                "right": {
                    "op": "!",
                    "arg": {"op": "=~", "left": {"var": "tag"}, "right": {"str": "v*"}},
                },
            },
        }
    }


@pytest.mark.parametrize(
    ("text", "source"),
    [
        ("branch=='main'", "branch == 'main'"),
        ("(((branch)))", "branch"),
        ("env.A || vars.B && event == 'push'", "env.A || vars.B && event == 'push'"),
        ("(env.A || vars.B) && true", "(env.A || vars.B) && true"),
        ("!!pull_request.fork", "!!pull_request.fork"),
        ("! branch == 'x'", "!(branch == 'x')"),  # `!` takes the whole comparison
        ("project != 'it''s'", "project != 'it''s'"),
        ("false || tag", "false || tag"),
    ],
)
def test_conditions_are_stored_as_canonical_text(text: str, source: str) -> None:
    assert gate_of(stage(f"when {{ {text} }}"))["condition"]["source"] == source


def test_enter_and_exit_inputs_with_parameters_and_timeouts() -> None:
    gate = gate_of(
        stage(
            "gates {\n"
            "    enter { event == 'push' input message: 'Deploy?', parameters: 'version' }\n"
            "    exit { input 'Looks good?', parameters: ['a', 'b'] timeout = '1h30m' }\n"
            "}"
        )
    )
    assert gate == {
        "condition": {
            "source": "event == 'push'",
            "ast": {"op": "==", "left": {"var": "event"}, "right": {"str": "push"}},
        },
        "enter_input": {"message": "Deploy?", "parameters": ["version"]},
        "exit_input": {"message": "Looks good?", "parameters": ["a", "b"], "timeout": 5400.0},
    }


def test_a_blocks_gate_applies_to_each_of_its_stages() -> None:
    pipeline = parse(
        "pipeline {\n"
        "    fanout {\n"
        "        when { branch == 'main' }\n"
        "        stage { name = 'A' gates { exit { input 'A ok?' } } steps { sh 'a' } }\n"
        "        stage { name = 'B' steps { sh 'b' } }\n"
        "    }\n"
        "}\n"
    )
    a, b = pipeline.batches[0].contexts
    assert a.gate is not None and b.gate is not None
    assert a.gate.condition == b.gate.condition
    assert a.gate.condition is not None and a.gate.condition.source == "branch == 'main'"
    assert a.gate.exit_input is not None and a.gate.exit_input.message == "A ok?"
    assert b.gate.exit_input is None


def test_a_model_without_gates_has_no_gate_key() -> None:
    data = parse("pipeline { stage { name = 'x' steps { sh 'x' } } }").to_dict()
    assert set(data["batches"][0]["contexts"][0]) == {"uuid", "properties", "environment", "steps"}


def test_the_model_round_trips_through_json_and_yaml() -> None:
    pipeline = parse(CORPUS_GATES.read_text())
    assert loads(pipeline.to_json()) == pipeline
    assert loads(pipeline.to_yaml()) == pipeline
    assert render(loads(pipeline.to_json())) == render(pipeline)


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        (lambda g: g["condition"].update(source="tag"), "condition.source", "does not say"),
        (lambda g: g["condition"].update(ast={"var": "nope"}), "condition.ast.var", "unknown"),
        (lambda g: g["condition"]["ast"].update(op="**"), "condition.ast", "not a condition"),
        (lambda g: g["exit_input"].update(timeout=0), "exit_input.timeout", "greater than 0"),
        (lambda g: g["exit_input"].update(message=""), "exit_input.message", "at least 1"),
        (lambda g: g.update(other=1), "other", "Extra inputs"),
        (lambda g: g["exit_input"].update(parameters=["a b"]), "exit_input.parameters[0]", "match"),
    ],
)
def test_loading_a_model_checks_its_gates(change: Any, path: str, fragment: str) -> None:
    data = parse(stage("gates { enter { branch == 'main' } exit { input 'ok?' } }")).to_dict()
    change(data["batches"][0]["contexts"][0]["gate"])
    with pytest.raises(ModelError) as info:
        load(data)
    assert info.value.path == f"batches[0].contexts[0].gate.{path}"
    assert fragment in info.value.message


@given(condition_asts)
def test_any_condition_parses_back_from_its_source(ast: dict[str, Any]) -> None:
    source = conditions.source(ast)
    gate = gate_of(stage(f"when {{ {source} }}"))
    assert gate["condition"] == {"source": source, "ast": ast}


# line, column, and a fragment of the message, for each wrong gate (in `stage(...)`: its
# text starts at line 3, column 9).
BAD = [
    ("when { branches == 'x' }", 3, 16, "unknown variable 'branches'"),
    ("when { env.A.B == 'x' }", 3, 16, "'env.' takes one name"),
    ("when { env == 'x' }", 3, 16, "'env.' takes one name"),
    ("when { branch = 'x' }", 3, 23, "expected '==', '!=' or '=~'"),
    ("when { branch == }", 3, 26, "expected"),
    ("when { branch == 'a' == 'b' }", 3, 30, "found '=='"),
    ("when { f('x') }", 3, 17, "found '('"),
    ("when { (branch }", 3, 24, "expected"),
    ("when { }", 3, 16, "expected"),
    ("when { branch && }", 3, 26, "expected"),
    ("when { tag } when { tag }", 3, 22, "this stage has a condition already"),
    ("when { tag } gates { enter { tag } }", 3, 30, "this stage has a condition already"),
    ("gates { enter { } }", 3, 17, "an 'enter' gate needs a condition or an 'input'"),
    ("gates { exit { tag } }", 3, 24, "expected 'input'"),
    ("gates { exit { input 'a' } exit { input 'b' } }", 3, 36, "an 'exit' input already"),
    ("gates { enter { timeout = '1h' } }", 3, 25, "a gate's timeout needs an 'input'"),
    ("gates { exit { input 'ok?' timeout = 'soon' } }", 3, 46, "'soon' is not a duration"),
    ("gates { exit { input 'ok?' timeout = '0s' } }", 3, 46, "more than zero"),
    ("gates { exit { input } }", 3, 30, "expected"),
    ("gates { exit { input '' } }", 3, 24, "an 'input' needs a message"),
    ("gates { exit { input reason: 'x' } }", 3, 30, "unknown input argument 'reason'"),
    ("gates { exit { input 'a', message: 'b' } }", 3, 35, "one message"),
    ("gates { exit { input message: ['a'] } }", 3, 30, "a string, not a list"),
    ("gates { exit { input 'a', parameters: 'b c' } }", 3, 47, "not a parameter name"),
    ("gates { exit { input 'a', parameters: ['v', 'v'] } }", 3, 53, "named twice"),
    ("gates { leave { input 'a' } }", 3, 17, "expected 'enter', 'exit' or '}'"),
]


@pytest.mark.parametrize(("text", "line", "column", "fragment"), BAD)
def test_a_wrong_gate_is_an_error_at_its_line_and_column(
    text: str, line: int, column: int, fragment: str
) -> None:
    error = error_of(stage(text))
    assert (error.line, error.column) == (line, column), error.message
    assert fragment in error.message
    assert str(error).startswith(f"Ottofile:{line}:{column}: ")


def test_a_stage_cannot_repeat_what_its_block_sets_for_it() -> None:
    error = error_of(
        "pipeline {\n"
        "    parallel {\n"
        "        gates { exit { input 'ok?' } }\n"
        "        stage { gates { exit { input 'me too?' } } steps { sh 'a' } }\n"
        "    }\n"
        "}\n"
    )
    assert (error.line, error.column) == (4, 25)
    assert "'parallel' block has an 'exit' input for each of its stages already" in error.message


def test_a_gate_after_the_blocks_stages_is_an_error() -> None:
    error = error_of(
        "pipeline {\n    parallel {\n        stage { steps { sh 'a' } }\n"
        "        when { tag }\n    }\n}\n"
    )
    assert (error.line, error.column) == (4, 9)
    assert "expected 'stage' or '}'" in error.message


def test_gate_words_stay_names_elsewhere() -> None:
    pipeline = parse(
        "pipeline { stage { environment { when = 'a' gates = 'b' } steps {\n"
        "    input 'x' when 'y' gates enter: 'z'\n} } }"
    )
    context = pipeline.batches[0].contexts[0]
    assert context.environment == {"when": "a", "gates": "b"}
    assert [s.symbol for s in context.steps] == ["input", "when", "gates"]
    assert context.gate is None


def test_fmt_writes_the_canonical_gates_and_keeps_comments() -> None:
    source = (
        "pipeline {\n"
        "  parallel { gates { enter { input 'go?' // ask first\n"
        "  timeout='120m' } }\n"
        "    stage { steps { sh 'a' } }  stage { steps { sh 'b' } } }\n"
        "  stage { gates { enter { (branch=='main') } } /* only main */ steps { sh 'c' } }\n"
        "}\n"
    )
    assert format_ottofile(source) == (
        "pipeline {\n"
        "    parallel {\n"
        "        gates {\n"
        "            enter {\n"
        "                input 'go?' // ask first\n"
        "                timeout = '2h'\n"
        "            }\n"
        "        }\n"
        "        stage {\n"
        "            steps {\n"
        "                sh 'a'\n"
        "            }\n"
        "        }\n"
        "        stage {\n"
        "            steps {\n"
        "                sh 'b'\n"
        "            }\n"
        "        }\n"
        "    }\n"
        "    stage {\n"
        "        when { branch == 'main' } /* only main */\n"
        "        steps {\n"
        "            sh 'c'\n"
        "        }\n"
        "    }\n"
        "}\n"
    )


def test_fmt_round_trips_the_gates_corpus_file() -> None:
    text = CORPUS_GATES.read_text()
    formatted = format_ottofile(text)
    assert format_ottofile(formatted) == formatted
    assert render(parse(formatted)) == render(parse(text))
    assert "// Conditions and approval gates" in formatted


def otto(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otto.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_explain_shows_each_gate() -> None:
    done = otto("explain", str(CORPUS_GATES))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    staging = lines.index("  context Staging")
    assert lines[staging + 1 : staging + 3] == [
        "    when: branch == 'main' && (tag =~ 'v*' || vars.version != '')",
        '    after its steps, waits for: input "Does staging look good to you?" (aborted after 2h)',
    ]
    assert (
        '    before it runs, waits for: input "Deploy to production?" (parameters version, ticket)'
        in lines
    )
    assert not any("=>" in line for line in lines)


def test_explain_for_a_trigger_says_what_runs_is_skipped_or_waits() -> None:
    feature = otto("explain", str(CORPUS_GATES), "--branch", "feature", "--event", "schedule")
    assert feature.returncode == 0, feature.stderr
    assert "for a run with branch 'feature', event 'schedule'" in feature.stdout
    assert '=> skipped: the condition is false (event="schedule", env.FORCE="")' in feature.stdout
    assert feature.stdout.rstrip().endswith(
        "would run: Unit, Lint; skipped: Build, Staging, Deploy A; "
        "waits for input: Deploy B, Announce"
    )
    main = otto(
        "explain", str(CORPUS_GATES), "--branch", "main", "--event", "schedule",
        "--tag", "v1.0", "--project", "shop", "-e", "FORCE=yes",
    )  # fmt: skip
    assert main.returncode == 0, main.stderr
    assert '=> runs (the condition holds: event="schedule", env.FORCE="yes")' in main.stdout
    assert "=> runs, then waits for input before it counts as done" in main.stdout
    assert main.stdout.rstrip().endswith(
        "would run: Build, Unit, Lint, Staging; waits for input: Deploy A, Deploy B, Announce"
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--event", "nightly"], "'nightly' is not one of push, tag"),
        (["-e", "NOVALUE"], "'NOVALUE': expected KEY=VALUE"),
    ],
)
def test_explain_refuses_a_bad_trigger_as_a_usage_error(args: list[str], fragment: str) -> None:
    done = otto("explain", str(CORPUS_GATES), *args)
    assert done.returncode == 64
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr


def test_parse_and_explain_exit_1_at_a_wrong_condition(tmp_path: Path) -> None:
    bad = tmp_path / "Ottofile"
    bad.write_text(stage("when { brnch == 'main' }"))
    for command in ("parse", "explain", "fmt"):
        done = otto(command, str(bad))
        assert done.returncode == 1
        assert done.stderr.startswith(f"{bad}:3:16: unknown variable 'brnch'"), done.stderr
    assert json.loads(otto("parse", str(CORPUS_GATES)).stdout)["batches"][2]["contexts"][0]["gate"][
        "exit_input"
    ] == {"message": "Does staging look good to you?", "parameters": [], "timeout": 7200.0}


def test_the_hint_about_a_stage_s_order_is_given_only_in_a_stage() -> None:
    inside_gate = error_of(stage("gates { exit { input 'a' timeout = '1h' tag } }"))
    assert (inside_gate.line, inside_gate.column) == (3, 49)
    assert inside_gate.message == "expected '}', found 'tag'"
    after_steps = error_of(
        "pipeline {\n    stage {\n        steps { sh 'x' }\n        when { tag }\n    }\n}\n"
    )
    assert (after_steps.line, after_steps.column) == (4, 9)
    assert "properties, 'environment' and gates go before it" in after_steps.message
