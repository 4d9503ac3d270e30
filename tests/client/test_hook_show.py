"""Hooks in `otto show`: after the run's own batches, under "After the run", each saying
what it reacts to; one that was not triggered says what it saw. A view kept current by
transitions (as `otto run` keeps it) says the same as one read at the end."""

from __future__ import annotations

import time

from clientkit import otto, wait_complete

from otto.client import OttoClient
from otto.client.render import context_name, context_note
from otto.client.view import RunView
from serverkit import Server

# Deploy waits at its gate, so the run can be read before any hook has been decided.
HOOKED = """pipeline {
    stage {
        name = 'Build'
        steps { sh 'true' }
        rollback { steps { sh 'echo never' } }
    }
    stage {
        name = 'Deploy'
        gates { enter { input 'Go?' } }
        steps { sh 'exit 1' }
        rollback { steps { sh 'echo undo' } }
    }
    notify {
        success { steps { sh 'echo never' } }
        complete { steps { sh 'echo done' } }
    }
}"""


def waiting(client: OttoClient, uuid: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        document = client.pipeline(uuid)
        if document["waiting"]:
            return document
        time.sleep(0.05)
    raise AssertionError(f"pipeline {uuid} did not wait within {timeout} s")


def said(run: RunView) -> list[tuple[str, str, str]]:
    """Each context as `otto show` names it, its state and why."""
    return [(context_name(c), c.state, context_note(c)) for c in run.contexts()]


def test_show_prints_hooks_after_the_run(server: Server, client: OttoClient) -> None:
    with server.client() as http:
        answer = http.post("/v1/pipelines", json={"ottofile": HOOKED})
    assert answer.status_code == 201, answer.text
    uuid = answer.json()["uuid"]
    early = RunView.load(waiting(client, uuid))
    assert [c.state for c in early.contexts()][2:] == ["Pending"] * 4  # no hook decided
    client.answer(uuid, "Deploy", approve=True)
    final = wait_complete(client, uuid)

    expected = [
        ("Build", "Success", ""),
        ("Deploy", "Failed", ""),
        ("Build rollback · rollback of Build", "Skipped", ": Build succeeded"),
        ("Deploy rollback · rollback of Deploy", "Success", ""),
        ("notify success · on success of the run", "Skipped", ": The run failed"),
        ("notify complete · when the run completes", "Success", ""),
    ]
    assert said(RunView.load(final)) == expected

    shown = otto("show", uuid, server=server)
    assert shown.returncode == 0, shown.stderr
    lines = [" ".join(line.split()) for line in shown.stdout.splitlines()]
    assert "✗ Failed" in lines[0]  # the hooks that ran (Success) do not change it
    after = lines.index("After the run")
    assert lines[after - 1].startswith("1. sh 'exit 1' ✗ Failed (exit 1)")  # Deploy's
    assert lines[after : after + 3] == [
        "After the run",
        "Batch 3/4 · Parallel ✓ Success",
        "Build rollback · rollback of Build ↷ Skipped: Build succeeded - - -",
    ]
    assert "notify success · on success of the run ↷ Skipped: The run failed - - -" in lines
    ran = next(line for line in lines if line.startswith("notify complete"))
    assert ran.startswith("notify complete · when the run completes ✓ Success local 1 ")

    for transition in client.transitions(uuid):  # as `otto run` follows the events
        early.apply(transition)
    assert said(early) == expected
