"""Step outcomes: exit code 0 Success, any other Failed; a script says Unstable (and
records variables) through the files named by `$OTTO_STATUS` and `$OTTO_VARIABLES`;
the `sh` step's `returnStatus`, `returnStdout`, `label` and `encoding`."""

from __future__ import annotations

import pytest

from agentkit import AgentHarness, context, sh
from isolation.test_isolation_containers import IN_CONTAINER, in_test_image
from isolationkit import assert_removed, need_bubblewrap, need_podman
from otto.isolation import SandboxSpec


@pytest.mark.parametrize("code", [1, 2, 3, 127])
def test_any_non_zero_exit_code_is_failed(harness: AgentHarness, code: int) -> None:
    out = harness.run(context(sh(f"exit {code}"), sh("touch after")))
    assert out.status == "Failed"
    step = out.result.steps[0]
    assert (step.status.value, step.exit_code, step.reason) == ("Failed", code, f"exit code {code}")
    assert not (out.workspace / "after").exists()


def test_a_failing_make_is_failed_not_aborted(harness: AgentHarness) -> None:
    make = sh("printf 'all:\\n\\tfalse\\n' > Makefile && make")
    out = harness.run(context(make))
    assert out.status == "Failed"
    assert (out.result.steps[0].exit_code, out.result.reason) == (2, "exit code 2")


def test_unstable_written_to_otto_status_marks_the_step_and_the_rest_run(
    harness: AgentHarness,
) -> None:
    out = harness.run(
        context(sh('echo some tests flaked; echo unstable >> "$OTTO_STATUS"'), sh("touch after"))
    )
    assert out.status == "Unstable"
    assert [s.status.value for s in out.result.steps] == ["Unstable", "Success"]
    assert out.result.steps[0].exit_code == 0
    assert out.result.reason == "unstable ($OTTO_STATUS)"
    assert (out.workspace / "after").exists()
    assert out.events[-1]["status"] == "Unstable"


def test_a_failing_exit_code_still_wins_over_unstable(harness: AgentHarness) -> None:
    out = harness.run(context(sh('echo unstable >> "$OTTO_STATUS"; exit 1')))
    assert (out.status, out.result.reason) == ("Failed", "exit code 1")


def test_failure_and_unknown_words_in_otto_status(harness: AgentHarness) -> None:
    out = harness.run(context(sh('echo FAILURE > "$OTTO_STATUS"'), sh("touch after")))
    assert (out.status, out.result.reason) == ("Failed", "failed ($OTTO_STATUS)")
    assert not (out.workspace / "after").exists()

    odd = harness.run(context(sh('printf "success\\nwobbly\\n" >> "$OTTO_STATUS"')))
    assert odd.status == "Success"
    assert "$OTTO_STATUS: ignored 'wobbly'" in odd.log(0)


def test_each_step_has_its_own_status_file(harness: AgentHarness) -> None:
    out = harness.run(
        context(
            sh('echo "$OTTO_STATUS" > first; echo unstable >> "$OTTO_STATUS"'),
            sh('test "$OTTO_STATUS" != "$(cat first)" && test ! -s "$OTTO_STATUS"'),
            sh('test ! -e "$(cat first)"'),
        )
    )
    assert [s.status.value for s in out.result.steps] == ["Unstable", "Success", "Success"]


def test_otto_variables_reach_later_steps(harness: AgentHarness) -> None:
    script = (
        'echo version=1.2 >> "$OTTO_VARIABLES"\n'
        'printf "NOTES<<END\\nline one\\nline two\\nEND\\n" >> "$OTTO_VARIABLES"'
    )
    out = harness.run(context(sh(script), sh('echo "$VAR_version"; echo "$VAR_NOTES"')))
    assert out.status == "Success"
    assert out.log(1).splitlines()[-3:] == ["1.2", "line one", "line two"]
    assert out.result.variables == {"version": "1.2", "NOTES": "line one\nline two"}
    assert "captured VAR_version, VAR_NOTES" in out.log(0)


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ("1X=2", "line 1: `1X` is not a variable name"),
        ("just words", "line 1: expected NAME=value or NAME<<DELIMITER"),
        ("A<<EOF\\nnever closed", "line 1: no line `EOF` ends the value"),
    ],
)
def test_bad_otto_variables_fail_the_step_saying_why(
    harness: AgentHarness, written: str, why: str
) -> None:
    out = harness.run(context(sh(f'printf "{written}\\n" >> "$OTTO_VARIABLES"'), sh("true")))
    assert out.status == "Failed"
    assert (out.result.reason or "").startswith(f"$OTTO_VARIABLES {why}")
    assert why in out.log(0)
    assert out.result.variables == {}


def test_otto_variables_are_bounded(harness: AgentHarness) -> None:
    big = sh('head -c 70000 /dev/zero | tr "\\0" x | sed "s/^/BIG=/" >> "$OTTO_VARIABLES"')
    out = harness.run(context(big))
    assert (out.status, out.result.reason) == (
        "Failed",
        "$OTTO_VARIABLES line 1: the value of `BIG` is over 64 KiB",
    )
    huge = harness.run(context(sh('head -c 2000000 /dev/zero >> "$OTTO_VARIABLES"')))
    assert (huge.status, huge.result.reason) == (
        "Failed",
        "$OTTO_VARIABLES holds more than 1024 KiB",
    )


def test_return_status_records_the_code_without_failing(harness: AgentHarness) -> None:
    out = harness.run(context(sh("exit 3", returnStatus="true"), sh("touch after")))
    assert out.status == "Success"
    step = out.result.steps[0]
    assert (step.status.value, step.exit_code) == ("Success", 3)
    assert "[otto] exit code 3 (returnStatus: the step does not fail)" in out.log(0)
    assert (out.workspace / "after").exists()

    plain = harness.run(context(sh("exit 3", returnStatus="false")))
    assert plain.status == "Failed"


def test_return_stdout_captures_the_output_trimmed(harness: AgentHarness) -> None:
    out = harness.run(
        context(
            sh("echo '  1.2.3  '; echo to the log >&2", returnStdout="VERSION"),
            sh('echo "[$VAR_VERSION]"'),
        )
    )
    assert out.status == "Success"
    assert out.result.variables == {"VERSION": "1.2.3"}
    assert "to the log" in out.log(0)
    assert "1.2.3" not in out.log(0).replace("+ echo '  1.2.3  '", "")
    assert out.log(1).splitlines()[-1] == "[1.2.3]"


def test_label_is_printed_instead_of_the_script(harness: AgentHarness) -> None:
    out = harness.run(context(sh("echo secret-ish-command-line", label="Say hello")))
    assert out.log(0).splitlines() == ["+ Say hello", "secret-ish-command-line"]


def test_encoding_decodes_the_output_for_the_log(harness: AgentHarness) -> None:
    out = harness.run(context(sh("printf 'caf\\351\\n'", encoding="latin-1")))
    assert out.status == "Success"
    assert out.log(0).splitlines()[-1] == "café"


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"encoding": "klingon"}, "`sh` encoding `klingon` is not an encoding"),
        ({"returnStdout": "1BAD"}, "`sh` returnStdout: `1BAD` is not a variable name"),
        ({"returnStatus": "maybe"}, "`sh` parameter `returnStatus` must be a boolean"),
    ],
)
def test_bad_sh_parameters_are_refused_before_anything_runs(
    harness: AgentHarness, params: dict[str, str], problem: str
) -> None:
    out = harness.run(context(sh("touch ran", **params)))
    assert out.status == "Failed"
    assert problem in (out.result.reason or "")
    assert not (out.workspace / "ran").exists()


CHANNELS = (
    'echo unstable >> "$OTTO_STATUS"; echo version=1.2 >> "$OTTO_VARIABLES"',
    'echo "seen $VAR_version"',
)


def test_the_files_work_in_the_sandbox(harness: AgentHarness) -> None:
    need_bubblewrap()
    ctx = context(sh(CHANNELS[0]), sh(CHANNELS[1]), sh("echo 2.0", returnStdout="NEXT"))
    out = harness.run(ctx, sandbox=SandboxSpec(kind="bubblewrap"))
    assert out.status == "Unstable", out.context_log + out.log(0)
    assert "sandbox: bubblewrap" in out.context_log
    assert [s.status.value for s in out.result.steps] == ["Unstable", "Success", "Success"]
    assert out.log(1).splitlines()[-1] == "seen 1.2"
    assert out.result.variables == {"version": "1.2", "NEXT": "2.0"}


def test_the_files_work_in_a_container_with_only_a_posix_shell(harness: AgentHarness) -> None:
    need_podman()
    ctx = context(
        sh(f"{IN_CONTAINER} && {CHANNELS[0]}"),
        sh(CHANNELS[1]),
        sh("echo 2.0", returnStdout="NEXT"),
    )
    out = harness.run(ctx, **in_test_image(ctx))
    assert out.status == "Unstable", out.context_log + out.log(0)
    assert [s.status.value for s in out.result.steps] == ["Unstable", "Success", "Success"]
    assert out.log(1).splitlines()[-1] == "seen 1.2"
    assert out.result.variables == {"version": "1.2", "NEXT": "2.0"}
    assert_removed(f"otto.context={ctx.uuid}")
