"""End-to-end runs: a real `otto server`, its local orchestrator and real
agents running real shell steps, observed only through the HTTP API."""

from __future__ import annotations

from pathlib import Path

import httpx

from agentkit import git_daemon, make_repo
from serverkit import Server, wait_for

from .e2ekit import (
    contexts,
    object_bytes,
    poll,
    show,
    step_log_key,
    submit,
    wait_complete,
    when,
)


def test_parallel_contexts_overlap_in_time(server: Server, tmp_path: Path) -> None:
    # Each step waits until all three have started: run one by one, they would time out.
    here = tmp_path / "here"
    here.mkdir()
    step = f"touch {here}/$OTTO_CONTEXT; until [ $(ls {here} | wc -l) -ge 3 ]; do sleep 0.05; done"
    with server.client() as c:
        uuid = submit(
            c,
            f"""
            pipeline {{
                parallel {{
                    stage {{ name = 'one'   steps {{ sh '{step}', timeout: '60s' }} }}
                    stage {{ name = 'two'   steps {{ sh '{step}', timeout: '60s' }} }}
                    stage {{ name = 'three' steps {{ sh '{step}', timeout: '60s' }} }}
                }}
            }}
            """,
        )
        run = wait_complete(c, uuid)

    assert (run["state"], run["status"]) == ("Complete", "Success")
    ctxs = list(contexts(run).values())
    assert [x["state"] for x in ctxs] == ["Success"] * 3
    starts = [when(x["started_at"]) for x in ctxs]
    ends = [when(x["finished_at"]) for x in ctxs]
    # All three [started_at, finished_at] intervals share a common instant.
    assert max(starts) < min(ends), (starts, ends)


def test_linear_batch_stops_at_the_first_failure(server: Server, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    with server.client() as c:
        # A Linear batch of several contexts exists only in a JSON model: take the
        # parser's model of a `parallel` block and make that batch Linear.
        parsed = c.post(
            "/v1/parse",
            json={
                "ottofile": f"""
                pipeline {{
                    parallel {{
                        stage {{ name = 'first'  steps {{ sh 'touch {marks}/first' }} }}
                        stage {{ name = 'second' steps {{ sh 'touch {marks}/second; exit 1' }} }}
                        stage {{ name = 'third'  steps {{ sh 'touch {marks}/third' }} }}
                    }}
                    stage {{ name = 'later' steps {{ sh 'touch {marks}/later' }} }}
                }}
                """
            },
        )
        assert parsed.status_code == 200, parsed.text
        model = parsed.json()
        model["batches"][0]["mode"] = "Linear"
        uuid = submit(c, model=model)
        run = wait_complete(c, uuid)

    assert (run["state"], run["status"]) == ("Complete", "Failed")
    assert run["batches"][0]["mode"] == "Linear"
    assert run["batches"][0]["status"] == "Failed"
    ctx = contexts(run)
    assert ctx["first"]["state"] == "Success"
    assert ctx["second"]["state"] == "Failed"
    assert ctx["second"]["steps"][0]["exit_code"] == 1
    # One after another: the second starts only once the first has finished.
    assert when(ctx["first"]["finished_at"]) <= when(ctx["second"]["started_at"])
    # Nothing after the failure starts: not the rest of the batch, not later batches.
    assert ctx["third"]["state"] == "NotRun"
    assert ctx["third"]["started_at"] is None
    assert ctx["third"]["steps"][0]["state"] != "Success"
    assert run["batches"][1]["state"] == "NotRun"
    assert ctx["later"]["state"] == "NotRun"
    assert sorted(p.name for p in marks.iterdir()) == ["first", "second"]


def test_a_step_that_says_unstable_is_unstable_and_the_run_goes_on(server: Server) -> None:
    with server.client() as c:
        uuid = submit(
            c,
            """
            pipeline {
                stage { name = 'flaky' steps {
                    sh 'echo some tests flaked; echo unstable >> "$OTTO_STATUS"'
                } }
                stage { name = 'after' steps { sh 'echo still running' } }
            }
            """,
        )
        run = wait_complete(c, uuid)

    ctx = contexts(run)
    step = ctx["flaky"]["steps"][0]
    assert (step["state"], step["exit_code"]) == ("Unstable", 0)
    assert ctx["flaky"]["state"] == "Unstable"
    assert run["batches"][0]["status"] == "Unstable"
    assert ctx["after"]["state"] == "Success"
    assert ctx["after"]["steps"][0]["exit_code"] == 0
    assert (run["state"], run["status"]) == ("Complete", "Unstable")


def test_retry_reruns_only_the_failed_context(server: Server, tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    with server.client() as c:
        uuid = submit(
            c,
            f"""
            pipeline {{
                stage {{ name = 'prepare' steps {{ sh 'echo prepared' }} }}
                stage {{ name = 'check'   steps {{ sh 'test -f {marker}' }} }}
            }}
            """,
        )
        first = wait_complete(c, uuid)
        assert (first["state"], first["status"]) == ("Complete", "Failed")
        before = contexts(first)
        assert before["check"]["state"] == "Failed"
        assert before["check"]["attempt"] == 1

        marker.touch()
        response = c.post(f"/v1/pipelines/{uuid}/retry")
        assert response.status_code == 202, response.text
        run = poll(
            c,
            uuid,
            lambda r: r["state"] == "Complete" and contexts(r)["check"]["attempt"] == 2,
        )

    assert (run["state"], run["status"]) == ("Complete", "Success")
    after = contexts(run)
    assert (after["check"]["state"], after["check"]["attempt"]) == ("Success", 2)
    assert after["check"]["steps"][0]["exit_code"] == 0
    # What succeeded is kept, not run again.
    assert (after["prepare"]["state"], after["prepare"]["attempt"]) == ("Success", 1)
    assert after["prepare"]["started_at"] == before["prepare"]["started_at"]
    assert after["prepare"]["finished_at"] == before["prepare"]["finished_at"]


def test_checkout_build_archive_and_unarchive_across_stages(server: Server, tmp_path: Path) -> None:
    repos = tmp_path / "repos"
    make_repo(repos / "greeter.git", {"greeting.txt": "hello from the repo\n"})
    with git_daemon(repos) as base, server.client() as c:
        uuid = submit(
            c,
            f"""
            pipeline {{
                stage {{
                    name = 'Build'
                    steps {{
                        git url: '{base}/greeter.git', branch: 'main', into: 'src'
                        sh 'tr a-z A-Z < src/greeting.txt > shout.txt'
                        archive artifacts: 'shout.txt', name: 'shout.txt'
                    }}
                }}
                stage {{
                    name = 'Check'
                    steps {{
                        sh 'test ! -e shout.txt && test ! -e src'
                        unarchive name: 'shout.txt'
                        sh 'grep -x "HELLO FROM THE REPO" shout.txt'
                    }}
                }}
            }}
            """,
        )
        run = wait_complete(c, uuid)
        artifact = object_bytes(c, f"{uuid}/artifacts/shout.txt")

    assert (run["state"], run["status"]) == ("Complete", "Success"), contexts(run)
    ctx = contexts(run)
    assert [s["state"] for s in ctx["Build"]["steps"]] == ["Success"] * 3
    # The later stage has its own workspace: only unarchive brings the file in.
    assert [s["state"] for s in ctx["Check"]["steps"]] == ["Success"] * 3
    assert artifact == b"HELLO FROM THE REPO\n"


def test_a_running_steps_log_grows_live(server: Server, tmp_path: Path) -> None:
    # The step waits after lines 3 and 6 until the test has read them.
    gates = tmp_path / "gates"
    gates.mkdir()
    gate = f"if [ $i = 3 ] || [ $i = 6 ]; then until [ -e {gates}/$i ]; do sleep 0.05; done; fi"
    with server.client() as c:
        uuid = submit(
            c,
            f"""
            pipeline {{
                stage {{
                    name = 'slow'
                    steps {{ sh 'for i in 1 2 3 4 5 6 7 8 9 10; do echo "line $i"; {gate}; done' }}
                }}
            }}
            """,
        )
        run = poll(c, uuid, lambda r: contexts(r)["slow"]["steps"][0]["state"] == "Running")
        key = step_log_key(run, contexts(run)["slow"])
        first = wait_for(lambda: log_with(c, key, 3), what="3 lines")
        (gates / "3").touch()
        second = wait_for(lambda: log_with(c, key, 6), what="6 lines")
        # Both reads happened before the step ended.
        step = contexts(show(c, uuid))["slow"]["steps"][0]
        assert step["state"] == "Running", step
        (gates / "6").touch()
        run = wait_complete(c, uuid)
        final = object_bytes(c, key)

    assert second.startswith(first)
    assert (printed(first), printed(second)) == (3, 6), (first, second)
    assert (run["state"], run["status"]) == ("Complete", "Success")
    assert final is not None
    assert [x for x in final.splitlines() if x.startswith(b"line ")] == [
        f"line {i}".encode() for i in range(1, 11)
    ]


def log_with(client: httpx.Client, key: str, lines: int) -> bytes | None:
    """The log, once it holds at least `lines` of the step's `line N` lines."""
    log = object_bytes(client, key)
    return log if log and printed(log) >= lines else None


def printed(log: bytes) -> int:
    """How many of the step's `line N` lines a log holds (the shell echoes its command first)."""
    return sum(1 for x in log.splitlines() if x.startswith(b"line "))
