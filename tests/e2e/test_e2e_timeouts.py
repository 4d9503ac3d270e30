"""End-to-end timeouts on a real server: a step's (`timeout: '1s'`), a stage's (`timeout =
'2s'`) and the server's `default_stage_timeout`, the killed processes checked to be gone."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from serverkit import Server, running_server

from .e2ekit import assert_gone, contexts, read_pid, submit, wait_complete

# The steps sleep 60 s: a run over well before that was stopped by its timeout. (Nothing
# tighter: on a busy machine, with tests running in parallel, the rest can take seconds.)
SOONER = 40


def reasons(client: httpx.Client, uuid: str) -> dict[str, str | None]:
    """Each context's and step's latest transition reason, by uuid."""
    answer = client.get(f"/v1/pipelines/{uuid}/transitions")
    return {t["id"]: t["reason"] for t in answer.json()["transitions"]}


def test_a_step_timeout_kills_its_process_tree(unsandboxed: Server, tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    with unsandboxed.client() as c:
        start = time.monotonic()
        uuid = submit(
            c,
            f"""
            pipeline {{
                stage {{
                    name = 'slow'
                    steps {{
                        sh 'sleep 60 & echo $! > {pidfile}; wait', timeout: '1s'
                        sh 'true'
                    }}
                }}
            }}
            """,
        )
        child = read_pid(pidfile)
        run = wait_complete(c, uuid, seconds=SOONER)
        elapsed = time.monotonic() - start
        why = reasons(c, uuid)
    slow = contexts(run)["slow"]
    assert [s["state"] for s in slow["steps"]] == ["Failed", "NotRun"]
    assert (slow["state"], why[slow["uuid"]]) == ("Failed", "timeout")
    assert why[slow["steps"][0]["uuid"]] == "timeout"
    assert elapsed < SOONER, elapsed
    assert_gone(child)  # the step's child went with it


def test_a_stage_timeout_stops_its_running_step(server: Server) -> None:
    """In the bubblewrap sandbox: the stage's deadline stops the step there too."""
    with server.client() as c:
        start = time.monotonic()
        uuid = submit(
            c,
            """
            pipeline {
                stage {
                    name = 'hung'
                    timeout = '2s'
                    steps {
                        sh 'sleep 60'
                        sh 'true'
                    }
                }
                stage { name = 'later' steps { sh 'true' } }
            }
            """,
        )
        run = wait_complete(c, uuid, seconds=SOONER)
        elapsed = time.monotonic() - start
        why = reasons(c, uuid)
    hung = contexts(run)["hung"]
    assert (run["status"], hung["state"], why[hung["uuid"]]) == ("Failed", "Failed", "timeout")
    first, second = hung["steps"]
    assert (first["state"], why[first["uuid"]]) == ("Failed", "timeout")
    assert second["state"] == "NotRun"
    assert contexts(run)["later"]["state"] == "NotRun"
    assert 2 <= elapsed < SOONER, elapsed


def test_the_server_default_applies_to_stages_without_a_timeout(tmp_path: Path) -> None:
    with (
        running_server(tmp_path / "home", OTTO_DEFAULT_STAGE_TIMEOUT="2s") as server,
        server.client() as c,
    ):
        start = time.monotonic()
        uuid = submit(
            c,
            """
            pipeline {
                parallel {
                    stage { name = 'default' steps { sh 'sleep 60' } }
                    stage { name = 'own' timeout = '1m' steps { sh 'sleep 3' } }
                }
            }
            """,
        )
        run = wait_complete(c, uuid, seconds=SOONER)
        elapsed = time.monotonic() - start
        why = reasons(c, uuid)
    default, own = contexts(run)["default"], contexts(run)["own"]
    assert (default["state"], why[default["uuid"]]) == ("Failed", "timeout")
    assert own["state"] == "Success"  # its own timeout, not the server's 2 s
    assert elapsed < SOONER, elapsed
