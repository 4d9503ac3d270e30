"""End-to-end stopping: Fanout aborting its siblings and a user's abort,
with the real processes of real steps checked to be gone afterwards."""

from __future__ import annotations

from pathlib import Path

from agentkit import alive
from serverkit import Server, running_server

from .e2ekit import assert_gone, contexts, poll, read_pid, submit, wait_complete


def test_fanout_failure_aborts_a_running_sibling(unsandboxed: Server, tmp_path: Path) -> None:
    server = unsandboxed
    pidfile = tmp_path / "sleeper.pid"
    with server.client() as c:
        uuid = submit(
            c,
            f"""
            pipeline {{
                fanout {{
                    stage {{ name = 'sleeper' steps {{ sh 'echo $$ > {pidfile}; sleep 60' }} }}
                    stage {{
                        name = 'breaker'
                        steps {{
                            sh 'while ! test -s {pidfile}; do sleep 0.05; done; exit 1'
                        }}
                    }}
                }}
                stage {{ name = 'later' steps {{ sh 'true' }} }}
            }}
            """,
        )
        pid = read_pid(pidfile)  # the sleeper runs (the breaker fails only now)
        run = wait_complete(c, uuid, seconds=20)
        transitions = c.get(f"/v1/pipelines/{uuid}/transitions").json()["transitions"]

    ctx = contexts(run)
    assert ctx["breaker"]["state"] == "Failed"
    assert ctx["sleeper"]["state"] == "Aborted"
    assert ctx["sleeper"]["steps"][0]["state"] == "Aborted"
    # Failed, the cause, not Aborted, the consequence.
    assert run["batches"][0]["status"] == "Failed"
    assert (run["state"], run["status"]) == ("Complete", "Failed")
    assert ctx["later"]["state"] == "NotRun"
    # The sibling went through Aborting, because its sibling failed.
    sleeper = [t for t in transitions if t["id"] == ctx["sleeper"]["uuid"]]
    assert [t["to"] for t in sleeper][-2:] == ["Aborting", "Aborted"], sleeper
    assert sleeper[-2]["reason"] == "fanout_sibling_failed"
    assert_gone(pid)


def test_parallel_batch_wider_than_concurrency_runs_in_turns(tmp_path: Path) -> None:
    with running_server(tmp_path / "home", OTTO_CONCURRENCY="1") as srv, srv.client() as c:
        uuid = submit(
            c,
            """
            pipeline {
                parallel {
                    stage { name = 'a' steps { sh 'true' } }
                    stage { name = 'b' steps { sh 'true' } }
                }
            }
            """,
        )
        run = wait_complete(c, uuid)

    assert (run["state"], run["status"]) == ("Complete", "Success")
    a, b = contexts(run)["a"], contexts(run)["b"]
    # One at a time: the intervals do not overlap.
    first, second = sorted([a, b], key=lambda x: x["started_at"])
    assert first["finished_at"] <= second["started_at"]


def test_fanout_failure_never_starts_a_pending_sibling(tmp_path: Path) -> None:
    # With one context at a time, one sibling waits Pending while the other runs and
    # fails. Which one the orchestrator picks first is not specified, so both fail the
    # same way and leave a mark: exactly one must have run, the other never started.
    marks = tmp_path / "marks"
    marks.mkdir()
    with running_server(tmp_path / "home", OTTO_CONCURRENCY="1") as srv, srv.client() as c:
        uuid = submit(
            c,
            f"""
            pipeline {{
                fanout {{
                    stage {{ name = 'a' steps {{ sh 'touch {marks}/a; sleep 0.3; exit 1' }} }}
                    stage {{ name = 'b' steps {{ sh 'touch {marks}/b; sleep 0.3; exit 1' }} }}
                }}
            }}
            """,
        )
        run = wait_complete(c, uuid)

    assert (run["state"], run["status"]) == ("Complete", "Failed")
    states = {name: x["state"] for name, x in contexts(run).items()}
    assert sorted(states.values()) == ["Failed", "NotRun"], states
    ran = next(name for name, state in states.items() if state == "Failed")
    skipped = next(name for name, state in states.items() if state == "NotRun")
    assert [p.name for p in marks.iterdir()] == [ran]
    pending = contexts(run)[skipped]
    assert pending["started_at"] is None
    assert pending["steps"][0]["started_at"] is None
    assert pending["steps"][0]["state"] in ("Pending", "NotRun")


def test_abort_mid_step_kills_the_whole_process_tree(unsandboxed: Server, tmp_path: Path) -> None:
    server = unsandboxed
    parent, child = tmp_path / "sh.pid", tmp_path / "child.pid"
    with server.client() as c:
        uuid = submit(
            c,
            f"""
            pipeline {{
                stage {{
                    name = 'tree'
                    steps {{ sh 'sleep 60 & echo $! > {child}; echo $$ > {parent}; wait' }}
                }}
                stage {{ name = 'later' steps {{ sh 'true' }} }}
            }}
            """,
        )
        pids = [read_pid(parent), read_pid(child)]
        assert all(alive(pid) for pid in pids)
        assert contexts(poll(c, uuid, lambda r: r["state"] == "Running"))["tree"]["state"] == (
            "Running"
        )
        response = c.post(f"/v1/pipelines/{uuid}/abort")
        assert response.status_code == 202, response.text
        run = wait_complete(c, uuid, seconds=20)

    assert (run["state"], run["status"]) == ("Complete", "Aborted")
    ctx = contexts(run)
    assert ctx["tree"]["state"] == "Aborted"
    assert ctx["tree"]["steps"][0]["state"] == "Aborted"
    assert ctx["later"]["state"] == "NotRun"
    for pid in pids:
        assert_gone(pid)
