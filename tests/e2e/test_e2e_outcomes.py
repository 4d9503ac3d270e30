"""Step outcomes end to end: exit code 0 Success, any other Failed; Unstable said through
`$OTTO_STATUS`; variables captured through `$OTTO_VARIABLES`, the control socket and
`sh`'s `returnStdout` reach later stages as `VAR_<NAME>`; `sh`'s `returnStatus` and
`label`. A real `otto server`, its orchestrator and agents, seen through the HTTP API
and `otto show`."""

from __future__ import annotations

import subprocess
import sys

from agentkit import CONTROL
from serverkit import Server

from .e2ekit import contexts, object_bytes, step_log_key, submit, wait_complete


def test_make_exiting_2_is_failed_not_aborted(server: Server) -> None:
    with server.client() as c:
        uuid = submit(
            c,
            """
            pipeline {
                stage { name = 'build' steps { sh 'printf "all:\\n\\tfalse\\n" > Makefile; make' } }
                stage { name = 'later' steps { sh 'true' } }
            }
            """,
        )
        run = wait_complete(c, uuid)
    ctx = contexts(run)
    step = ctx["build"]["steps"][0]
    assert (step["state"], step["exit_code"]) == ("Failed", 2)
    assert ctx["build"]["state"] == "Failed"
    assert ctx["later"]["state"] == "NotRun"
    assert (run["state"], run["status"]) == ("Complete", "Failed")


def test_captured_variables_reach_later_stages(unsandboxed: Server) -> None:
    # Unsandboxed: the control socket's client is this test's Python, not the system's.
    with unsandboxed.client() as c:
        uuid = submit(
            c,
            f"""
            pipeline {{
                stage {{ name = 'version' steps {{
                    sh 'echo version=1.2 >> "$OTTO_VARIABLES"'
                    sh '{CONTROL} capture FROM_SOCKET yes'
                    sh script: 'echo abc123', returnStdout: 'COMMIT'
                }} }}
                stage {{ name = 'use' steps {{
                    sh 'echo "v=$VAR_version s=$VAR_FROM_SOCKET c=$VAR_COMMIT"'
                }} }}
                stage {{ name = 'override' steps {{ sh 'echo version=2.0 >> "$OTTO_VARIABLES"' }} }}
                stage {{ name = 'last' steps {{ sh 'echo "v=$VAR_version"' }} }}
            }}
            """,
        )
        run = wait_complete(c, uuid)
        ctx = contexts(run)
        assert run["status"] == "Success", ctx
        use = object_bytes(c, step_log_key(run, ctx["use"]))
        last = object_bytes(c, step_log_key(run, ctx["last"]))
    assert use is not None and use.decode().splitlines()[-1] == "v=1.2 s=yes c=abc123"
    assert last is not None and last.decode().splitlines()[-1] == "v=2.0"


def test_a_bad_variables_file_fails_the_step_saying_why(server: Server) -> None:
    with server.client() as c:
        uuid = submit(
            c,
            """pipeline { stage { name = 'bad' steps {
                sh 'echo 9lives=1 >> "$OTTO_VARIABLES"'
            } } }""",
        )
        run = wait_complete(c, uuid)
    step = contexts(run)["bad"]["steps"][0]
    assert (step["state"], step["exit_code"]) == ("Failed", 0)
    assert run["status"] == "Failed"


def test_return_status_and_label(server: Server) -> None:
    with server.client() as c:
        uuid = submit(
            c,
            """
            pipeline {
                stage { name = 'lint' steps {
                    sh script: 'echo lint found things; exit 4', returnStatus: 'true',
                       label: 'Lint the code'
                    sh 'true'
                } }
            }
            """,
        )
        run = wait_complete(c, uuid)
        ctx = contexts(run)["lint"]
        log = object_bytes(c, step_log_key(run, ctx))
        page = c.get(f"/pipelines/{uuid}")
    assert page.status_code == 200
    assert "1. sh: Lint the code" in page.text  # the dashboard's step list
    assert "sh: echo lint found things" not in page.text
    step = ctx["steps"][0]
    assert (step["state"], step["exit_code"]) == ("Success", 4)
    assert (ctx["state"], run["status"]) == ("Success", "Success")
    assert log is not None
    text = log.decode()
    assert text.startswith("+ Lint the code\nlint found things\n")
    assert "[otto] exit code 4 (returnStatus: the step does not fail)" in text
    assert "echo lint found things" not in text

    shown = subprocess.run(
        [sys.executable, "-m", "otto.cli", "show", uuid, "--server", server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert "1. sh: Lint the code" in shown.stdout
    assert "echo lint found things" not in shown.stdout


def test_in_the_sandbox_a_written_variable_reaches_the_next_stage(server: Server) -> None:
    with server.client() as c:
        uuid = submit(
            c,
            """
            pipeline {
                stage { name = 'write' steps { sh 'echo VERSION=1.2 >> "$OTTO_VARIABLES"' } }
                stage { name = 'read' steps { sh 'test "$VAR_VERSION" = 1.2' } }
            }
            """,
        )
        run = wait_complete(c, uuid)
    assert (run["status"], contexts(run)["read"]["state"]) == ("Success", "Success")
