"""Approval gates in commit statuses: a push whose run waits at an input reports
`pending` "waiting for approval", `pending` again once approved, then its outcome."""

from __future__ import annotations

from pathlib import Path

from hookkit import deliver, push_payload
from test_webhook_e2e import FULL_NAME, SECRET, finished, pipelines, start_world

from serverkit import wait_for

OTTOFILE = """pipeline {
  stage {
    name = 'deploy'
    gates { enter { input 'Deploy?' } }
    steps { sh 'true' }
  }
}
"""


def test_a_waiting_run_is_pending_waiting_for_approval(tmp_path: Path) -> None:
    with start_world(tmp_path) as world:
        sha = world.repo.commit({"Ottofile": OTTOFILE})
        world.repo.push("main")
        answer = deliver(world.client, push_payload(world.repo.url, FULL_NAME,
                                                    "refs/heads/main", sha), SECRET)  # fmt: skip
        assert answer.status_code == 202, answer.text
        uuid = wait_for(lambda: next((r["uuid"] for r in pipelines(world.client)), None))
        wait_for(lambda: world.github.of(sha) == ["pending", "pending"], what="waiting status")
        said = [s["description"] for s in world.github.statuses if s["sha"] == sha]
        assert said == ["Otto: accepted", "Otto: waiting for approval"]
        approved = world.client.post(f"/v1/pipelines/{uuid}/contexts/deploy/approve", json={})
        assert approved.status_code == 200, approved.text
        assert wait_for(lambda: finished(world.client, uuid))["status"] == "Success"
        wait_for(lambda: len(world.github.of(sha)) == 4, what="the final status")
        said = [(s["state"], s["description"]) for s in world.github.statuses if s["sha"] == sha]
    assert said[2:] == [("pending", "Otto: approved, running"), ("success", "Otto: Success")]
