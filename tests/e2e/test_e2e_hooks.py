"""Steps for outcomes end to end: a failing stage's `rollback` runs and a succeeding
stage's does not, `notify { failure … }` reacts to its stage, and the run's
`notify { complete … }` runs after an abort, each as a context of its own with its own
log, never changing the run's status. A real `otto server`, its orchestrator and agents."""

from __future__ import annotations

from pathlib import Path

import httpx

from serverkit import Server

from .e2ekit import Run, contexts, object_bytes, poll, step_log_key, submit, wait_complete

TELL = 'echo "$OTTO_HOOK $OTTO_HOOK_STAGE $OTTO_HOOK_OUTCOME"'


def log_of(client: httpx.Client, run: Run, context: Run) -> str:
    data = object_bytes(client, step_log_key(run, context))
    assert data is not None, f"no log for {context['name']}"
    return data.decode()


def test_a_failing_stage_is_rolled_back_and_a_succeeding_one_is_not(server: Server) -> None:
    with server.client() as c:
        uuid = submit(
            c,
            f"""
            pipeline {{
                stage {{
                    name = 'migrate'
                    steps {{ sh 'true' }}
                    rollback {{ steps {{ sh '{TELL}' }} }}
                }}
                stage {{
                    name = 'deploy'
                    environment {{ TARGET = 'staging' }}
                    steps {{ sh 'exit 3' }}
                    rollback {{ steps {{ sh 'echo "undo $TARGET"; {TELL}' }} }}
                    notify {{ failure {{ steps {{ sh '{TELL}' }} }} }}
                }}
                notify {{ success {{ steps {{ sh '{TELL}' }} }} }}
            }}
            """,
        )
        run = wait_complete(c, uuid)
        ctx = contexts(run)
        assert {name: ctx[name]["state"] for name in ctx} == {
            "migrate": "Success",
            "deploy": "Failed",
            "migrate rollback": "Skipped",
            "deploy rollback": "Success",
            "deploy notify failure": "Success",
            "notify success": "Skipped",
        }
        assert (run["state"], run["status"]) == ("Complete", "Failed")
        undo = log_of(c, run, ctx["deploy rollback"]).splitlines()
        assert undo[-2:] == ["undo staging", "rollback deploy Failed"]
        assert log_of(c, run, ctx["deploy notify failure"]).splitlines()[-1] == (
            "failure deploy Failed"
        )


def test_the_runs_notification_runs_after_an_abort(server: Server, tmp_path: Path) -> None:
    started = tmp_path / "started"
    with server.client() as c:
        uuid = submit(
            c,
            f"""
            pipeline {{
                stage {{ name = 'long' steps {{ sh 'touch {started}; sleep 60' }} }}
                notify {{
                    failure {{ steps {{ sh '{TELL}' }} }}
                    complete {{ steps {{ sh '{TELL}; exit 1' }} }}
                }}
            }}
            """,
        )
        poll(c, uuid, lambda run: started.exists(), seconds=20)
        assert c.post(f"/v1/pipelines/{uuid}/abort").status_code in (200, 202)
        run = wait_complete(c, uuid, seconds=40)
        ctx = contexts(run)
        assert ctx["long"]["state"] == "Aborted"
        assert ctx["notify failure"]["state"] == "Skipped"  # an abort is not a failure
        assert ctx["notify complete"]["state"] == "Failed"  # its own outcome, not the run's
        assert (run["state"], run["status"]) == ("Complete", "Aborted")
        lines = log_of(c, run, ctx["notify complete"]).splitlines()
        assert lines[-1] == "complete  Aborted"
