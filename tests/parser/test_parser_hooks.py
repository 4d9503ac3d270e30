"""Hooks in the Ottofile: a stage's `rollback { … }` and `notify { … }`, the pipeline's
`notify { … }`; the hook contexts they make, their errors, `render`, `otto fmt` and
`otto explain`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from parserkit import normalise

from otto.model import BatchMode, Context, HookOn, check_invariants, load
from otto.parser import ParseError, format_ottofile, parse, parse_syntax, render

DEPLOY = """\
pipeline {
    stage {
        name = 'Build'
        steps { sh 'make' }
    }
    stage {
        name = 'Deploy'
        timeout = '10m'
        image = 'debian:12'
        credentials = ['deploy-key']
        environment { TARGET = 'prod' }
        when { branch == 'main' }
        cache { use pip }
        steps { sh './deploy' }
        rollback { steps { sh './undeploy' } }
        notify {
            failure { steps { sh './page' } }
            success { steps { sh 'echo ok' } }
            complete { steps { sh './cleanup' } }
        }
    }
    notify { failure { steps { sh './mail' } } complete { steps { sh 'echo done' } } }
}
"""


def error_of(text: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(text, "Ottofile")
    return info.value


def hook_of(context: Context) -> tuple[HookOn, str | None]:
    assert context.hook is not None
    return context.hook.on, context.hook.of


def scripts(context: Context) -> list[Any]:
    return [step.parameters[0] for step in context.steps if isinstance(step.parameters, list)]


def test_hooks_trail_in_a_batch_of_rollbacks_then_one_of_notifications() -> None:
    pipeline = parse(DEPLOY)
    check_invariants(pipeline)
    assert load(pipeline.to_dict()) == pipeline
    build, deploy = (batch.contexts[0] for batch in pipeline.batches[:2])
    rollbacks, notifications = pipeline.batches[2:]
    assert len(pipeline.batches) == 4
    assert (rollbacks.mode, notifications.mode) == (BatchMode.PARALLEL, BatchMode.PARALLEL)
    assert [hook_of(c) for c in rollbacks.contexts] == [(HookOn.ROLLBACK, deploy.uuid)]
    assert [hook_of(c) for c in notifications.contexts] == [
        (HookOn.FAILURE, deploy.uuid),
        (HookOn.SUCCESS, deploy.uuid),
        (HookOn.COMPLETE, deploy.uuid),
        (HookOn.FAILURE, None),
        (HookOn.COMPLETE, None),
    ]
    assert [c.name for c in pipeline.contexts()] == [
        "Build", "Deploy", "Deploy rollback", "Deploy notify failure", "Deploy notify success",
        "Deploy notify complete", "notify failure", "notify complete",
    ]  # fmt: skip
    assert [scripts(c) for c in pipeline.batches[3].contexts] == [
        ["./page"], ["echo ok"], ["./cleanup"], ["./mail"], ["echo done"]
    ]  # fmt: skip
    assert build.hook is None and deploy.hook is None


def test_a_stage_hook_has_what_its_stage_had_but_its_timeout_gate_and_cache() -> None:
    pipeline = parse(DEPLOY)
    undeploy = pipeline.batches[2].contexts[0]
    assert undeploy.properties == {"name": "Deploy rollback", "image": "debian:12"}
    assert undeploy.environment == {"TARGET": "prod"}
    assert undeploy.credentials == ["deploy-key"]
    assert undeploy.gate is None and undeploy.cache is None
    assert [(s.symbol, s.context) for s in undeploy.steps] == [("sh", undeploy.uuid)]
    mail = pipeline.batches[3].contexts[3]
    assert (mail.properties, mail.environment, mail.credentials) == (
        {"name": "notify failure"},
        {},
        [],
    )
    assert pipeline.to_dict()["batches"][3]["contexts"][3]["hook"] == {"on": "failure"}


def test_hooks_may_stand_before_the_steps_and_unnamed_stages_name_them_plainly() -> None:
    before = parse(
        "pipeline { stage { notify { success { steps { sh 'b' } } } "
        "rollback { steps { sh 'a' } } steps { sh 'x' } } }"
    )
    after = parse(
        "pipeline { stage { steps { sh 'x' } rollback { steps { sh 'a' } } "
        "notify { success { steps { sh 'b' } } } } }"
    )
    assert normalise(before) == normalise(after)
    assert [c.name for c in after.contexts()] == ["", "rollback", "notify success"]


def test_a_pipeline_without_hooks_has_no_hook_batches() -> None:
    pipeline = parse("pipeline { stage { name = 'a' steps { sh 'x' } } }")
    assert len(pipeline.batches) == 1
    only_notify = parse(
        "pipeline { stage { steps { sh 'x' } notify { complete { steps { sh 'y' } } } } }"
    )
    assert [len(b.contexts) for b in only_notify.batches] == [1, 1]
    assert only_notify.batches[1].contexts[0].hook is not None


def test_stages_of_parallel_fanout_and_each_have_hooks_of_their_own() -> None:
    pipeline, _, syntax = parse_syntax(
        "pipeline {\n"
        "    fanout { stage { name = 'F' steps { sh 'f' } rollback { steps { sh 'undo f' } } } }\n"
        "    each(os: ['linux', 'mac']) {\n"
        "        stage {\n"
        "            name = concat('Test ', it.os)\n"
        "            steps { sh it.os }\n"
        "            notify { failure { steps { sh concat('report ', it.os) } } }\n"
        "            rollback { steps { echo it.os } }\n"
        "        }\n"
        "    }\n"
        "}\n"
    )
    fan, (linux, mac) = pipeline.batches[0].contexts[0], pipeline.batches[1].contexts
    rollbacks, notifications = pipeline.batches[2].contexts, pipeline.batches[3].contexts
    assert [(c.name, hook_of(c)[1]) for c in rollbacks] == [
        ("F rollback", fan.uuid),
        ("Test linux rollback", linux.uuid),
        ("Test mac rollback", mac.uuid),
    ]
    assert [c.steps[0].parameters for c in rollbacks] == [["undo f"], ["linux"], ["mac"]]
    assert [(c.name, scripts(c), c.environment) for c in notifications] == [
        ("Test linux notify failure", ["report linux"], {"OTTO_EACH_OS": "linux"}),
        ("Test mac notify failure", ["report mac"], {"OTTO_EACH_OS": "mac"}),
    ]
    matrix = syntax.matrices[1]
    assert [hook_of(c) for c in matrix.hooks] == [
        (HookOn.ROLLBACK, matrix.template.uuid),
        (HookOn.FAILURE, matrix.template.uuid),
    ]


def test_the_hook_words_stay_names_wherever_no_keyword_fits() -> None:
    pipeline = parse(
        "pipeline {\n"
        "    stage {\n"
        "        name = 'notify'\n"
        "        environment { rollback = 'r'  success = 's' }\n"
        "        steps {\n"
        "            notify 'team'\n"
        "            success failure: 'f', complete: 'c'\n"
        "            rollback 'x' { failure 'y' }\n"
        "        }\n"
        "        notify { complete { steps { complete 'z' } } }\n"
        "    }\n"
        "}\n"
    )
    stage, hook = pipeline.batches[0].contexts[0], pipeline.batches[1].contexts[0]
    assert [s.symbol for s in stage.steps] == ["notify", "success", "rollback"]
    assert stage.steps[1].parameters == {"failure": "f", "complete": "c"}
    assert stage.environment == {"rollback": "r", "success": "s"}
    assert (hook.name, hook.steps[0].symbol) == ("notify notify complete", "complete")


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "pipeline { stage { steps { sh 'x' } rollback { steps { sh 'a' } } "
            "rollback { steps { sh 'b' } } } }",
            (1, 67),
            "a stage has at most one 'rollback' block",
        ),
        (
            "pipeline {\n    stage {\n        steps { sh 'x' }\n        notify { }\n    }\n}",
            (4, 9),
            "a 'notify' block needs at least one of failure, success or complete",
        ),
        (
            "pipeline {\n    rollback { steps { sh 'a' } }\n}",
            (2, 5),
            "a rollback belongs to a stage",
        ),
        (
            "pipeline { notify { success { steps { sh 'a' } } success { steps { sh 'b' } } } }",
            (1, 50),
            "this 'notify' block has a 'success' already",
        ),
        (
            "pipeline { stage { steps { sh 'x' }\n"
            "rollback { steps { sh 'a' } steps { sh 'b' } } } }",
            (2, 29),
            "the 'rollback' block holds exactly one 'steps { … }' block",
        ),
        (
            "pipeline { stage { steps { sh 'x' } notify { success { sh 'a' } } } }",
            (1, 56),
            "expected 'steps', found 'sh'",
        ),
        (
            "pipeline { stage { steps { sh 'x' } rollback { } } }",
            (1, 48),
            "expected 'steps', found '}'",
        ),
        (
            "pipeline { parallel { rollback { steps { sh 'a' } } } }",
            (1, 23),
            "expected 'stage', 'when', 'gates' or '}', found 'rollback'",
        ),
        (
            "pipeline { stage { steps { sh 'x' } name = 'n' } }",
            (1, 37),
            "expected 'rollback', 'notify' or '}', found 'name'",
        ),
        (
            "pipeline { stage { steps { sh 'x' } rollback { steps { sh it } } } }",
            (1, 59),
            "'it' is only defined inside an 'each' block",
        ),
    ],
)
def test_mistakes_are_errors_where_they_stand(
    text: str, where: tuple[int, int], message: str
) -> None:
    error = error_of(text)
    assert (error.line, error.column) == where, error.message
    assert message in error.message


def test_a_misplaced_rollback_is_not_offered_among_the_pipeline_s_items() -> None:
    error = error_of("pipeline { bogus }")
    assert "'notify'" in error.expected
    assert "'rollback'" not in error.expected


# -- render and fmt ------------------------------------------------------------------------


def round_trip(text: str) -> str:
    pipeline, _, syntax = parse_syntax(text)
    rendered = render(pipeline, syntax)
    again, _, again_syntax = parse_syntax(rendered)
    assert normalise(again) == normalise(pipeline)
    assert render(again, again_syntax) == rendered
    return rendered


def test_render_writes_hooks_in_their_stage_after_its_steps_and_the_pipeline_s_last() -> None:
    rendered = round_trip(DEPLOY)
    assert rendered.endswith(
        "        steps {\n"
        "            sh './deploy'\n"
        "        }\n"
        "        rollback {\n"
        "            steps {\n"
        "                sh './undeploy'\n"
        "            }\n"
        "        }\n"
        "        notify {\n"
        "            failure {\n"
        "                steps {\n"
        "                    sh './page'\n"
        "                }\n"
        "            }\n"
        "            success {\n"
        "                steps {\n"
        "                    sh 'echo ok'\n"
        "                }\n"
        "            }\n"
        "            complete {\n"
        "                steps {\n"
        "                    sh './cleanup'\n"
        "                }\n"
        "            }\n"
        "        }\n"
        "    }\n"
        "    notify {\n"
        "        failure {\n"
        "            steps {\n"
        "                sh './mail'\n"
        "            }\n"
        "        }\n"
        "        complete {\n"
        "            steps {\n"
        "                sh 'echo done'\n"
        "            }\n"
        "        }\n"
        "    }\n"
        "}\n"
    )


def test_render_keeps_a_matrix_s_hooks_in_its_template() -> None:
    rendered = round_trip(
        "pipeline { each('a', 'b') { stage { name = it steps { sh it } "
        "rollback { steps { sh concat('undo ', it) } } } } "
        "stage { steps { sh 'z' } notify { complete { steps { sh 'c' } } } } }"
    )
    assert "rollback {\n                steps {\n                    sh concat('undo ', it)" in (
        rendered
    )
    assert rendered.count("rollback {") == 1


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            lambda data: data["batches"][2]["contexts"][0]["properties"].update(name="Undo"),
            "batches[2].contexts[0]: a hook context has its stage's properties",
        ),
        (
            lambda data: data["batches"][2]["contexts"][0]["environment"].clear(),
            "batches[2].contexts[0]: a hook context has its stage's properties",
        ),
        (
            lambda data: data["batches"].__setitem__(
                slice(2, 4), [data["batches"][3], data["batches"][2]]
            ),
            "batches[2]: hook contexts stand in one Parallel batch of rollbacks",
        ),
        (
            lambda data: data["batches"][3].update(mode="Fanout"),
            "batches[2]: hook contexts stand in one Parallel batch of rollbacks",
        ),
        (
            lambda data: data["batches"][3]["contexts"].reverse(),
            "batches[2]: hook contexts stand in one Parallel batch of rollbacks",
        ),
    ],
)
def test_render_refuses_hooks_no_file_could_make(change: Any, fragment: str) -> None:
    data = parse(DEPLOY).to_dict()
    change(data)
    with pytest.raises(ValueError) as info:
        render(load(data))
    assert fragment in str(info.value)


def test_fmt_keeps_the_comments_of_hooks_written_before_the_steps() -> None:
    source = (
        "pipeline {\n"
        "    notify { // the run's\n"
        "        complete { steps { sh 'done' } } /* all */\n"
        "    }\n"
        "    stage {\n"
        "        // undo it\n"
        "        rollback { steps { sh 'undo' } }\n"
        "        steps { sh 'do' }\n"
        "    }\n"
        "}\n"
    )
    formatted = format_ottofile(source)
    assert formatted == (
        "pipeline {\n"
        "    stage {\n"
        "        steps {\n"
        "            sh 'do'\n"
        "        }\n"
        "        // undo it\n"
        "        rollback {\n"
        "            steps {\n"
        "                sh 'undo'\n"
        "            }\n"
        "        }\n"
        "    }\n"
        "    notify { // the run's\n"
        "        complete {\n"
        "            steps {\n"
        "                sh 'done'\n"
        "            }\n"
        "        } /* all */\n"
        "    }\n"
        "}\n"
    )
    assert format_ottofile(formatted) == formatted


# -- otto explain ----------------------------------------------------------------------------


def otto(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otto.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_explain_shows_each_hook_under_its_stage_and_the_run_s_last() -> None:
    done = otto("explain", "-", stdin=DEPLOY.replace("cache { use pip }", ""))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith(": 2 batch(es), then 6 hook(s) that run on outcomes")
    deploy = lines.index("  context Deploy")
    assert lines[deploy + 6 :] == [
        '    1. sh script="./deploy"',
        "    rollback: runs if Deploy fails",
        '      1. sh script="./undeploy"',
        "    notify failure: runs if Deploy fails",
        '      1. sh script="./page"',
        "    notify success: runs if Deploy succeeds (Success or Unstable)",
        '      1. sh script="echo ok"',
        "    notify complete: runs once Deploy has ended, whatever its outcome (Aborted too)",
        '      1. sh script="./cleanup"',
        "the run's own hooks",
        "  notify failure: runs if the run fails",
        '    1. sh script="./mail"',
        "  notify complete: runs once the run has ended, whatever its outcome (Aborted too)",
        '    1. sh script="echo done"',
    ]


def test_explain_for_a_trigger_says_hooks_depend_on_outcomes() -> None:
    main = otto("explain", "-", "--branch", "main", "--event", "push", stdin=DEPLOY)
    assert main.returncode == 0, main.stderr
    assert "      => depends on outcomes: runs if Deploy fails" in main.stdout
    assert main.stdout.rstrip().endswith(
        "would run: Build, Deploy; depends on outcomes: Deploy rollback, Deploy notify failure, "
        "Deploy notify success, Deploy notify complete, notify failure, notify complete"
    )
    feature = otto("explain", "-", "--branch", "feature", "--event", "push", stdin=DEPLOY)
    assert feature.returncode == 0, feature.stderr
    assert "      => skipped: Deploy is skipped, so it has no outcome to react to" in (
        feature.stdout
    )
    assert feature.stdout.rstrip().endswith(
        "would run: Build; skipped: Deploy, Deploy rollback, Deploy notify failure, "
        "Deploy notify success, Deploy notify complete; "
        "depends on outcomes: notify failure, notify complete"
    )


def test_explain_checks_the_steps_of_hooks_too(tmp_path: Path) -> None:
    path = tmp_path / "Ottofile"
    path.write_text("pipeline {\n    stage {\n        steps { sh 'x' }\n"
                    "        rollback { steps { shh 'undo' } }\n    }\n}\n")  # fmt: skip
    done = otto("explain", str(path), stdin="")
    assert done.returncode == 1
    assert f"{path}:4:28: unknown step `shh`" in done.stderr
