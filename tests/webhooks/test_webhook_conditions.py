"""Conditions end to end: pushes of a real repository to a real `otto server`; the PSM
skips a stage whose `when { … }` is false for the run (its branch, a variable an earlier
stage captured), runs it when true; the API, `otto show` and the commit status agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from hookkit import deliver, push_payload
from test_webhook_e2e import FULL_NAME, SECRET, World, finished, pipelines, start_world

from serverkit import wait_for

OTTOFILE = """pipeline {{
  stage {{
    name = 'build'
    steps {{ sh 'echo X=1 >> "$OTTO_VARIABLES"' }}
  }}
  stage {{
    name = 'deploy'
    when {{ branch == 'main' }}
    steps {{ sh 'mkdir -p {out}/deployed/$OTTO_BRANCH' }}
  }}
  stage {{
    name = 'captured'
    when {{ vars.X == '1' }}
    steps {{ sh 'mkdir -p {out}/captured/$OTTO_BRANCH' }}
  }}
  stage {{
    name = 'never'
    when {{ vars.X == '2' }}
    steps {{ sh 'mkdir -p {out}/never' }}
  }}
}}
"""


def push(world: World, branch: str, sha: str) -> dict[str, Any]:
    """Push `sha` to `branch`, deliver the forge's payload: the run, once it has ended."""
    world.repo.push(branch)
    known = {r["uuid"] for r in pipelines(world.client)}
    body = push_payload(world.repo.url, FULL_NAME, f"refs/heads/{branch}", sha)
    answer = deliver(world.client, body, SECRET)
    assert answer.status_code == 202, answer.text
    uuid = wait_for(
        lambda: next((r["uuid"] for r in pipelines(world.client) if r["uuid"] not in known), None),
        what="a new run",
    )
    return wait_for(lambda: finished(world.client, uuid), what="the run to end")


def states(run: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["state"] for b in run["batches"] for c in b["contexts"]}


def test_a_stage_runs_on_main_and_is_skipped_on_another_branch(tmp_path: Path) -> None:
    with start_world(tmp_path) as world:
        out = world.out
        sha = world.repo.commit({"Ottofile": OTTOFILE.format(out=out)})
        on_main = push(world, "main", sha)
        other = world.repo.commit({"README": "a change\n"})
        on_branch = push(world, "release/next", other)
        wait_for(lambda: world.github.of(other) == ["pending", "success"], what="its statuses")
        shown = subprocess.run(
            [sys.executable, "-m", "otto.cli", "show", on_branch["uuid"],
             "--server", str(world.client.base_url)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert on_main["status"] == "Success", on_main
    assert states(on_main) == {
        "build": "Success", "deploy": "Success", "captured": "Success", "never": "Skipped",
    }  # fmt: skip
    assert on_branch["status"] == "Success", on_branch
    assert states(on_branch) == {
        "build": "Success", "deploy": "Skipped", "captured": "Success", "never": "Skipped",
    }  # fmt: skip
    deploy = on_branch["batches"][1]["contexts"][0]
    assert deploy["reason"] == "condition_false" and deploy["orchestrator"] is None
    assert [s["state"] for s in deploy["steps"]] == ["NotRun"]
    assert (out / "captured" / "main").is_dir() and (out / "captured" / "release/next").is_dir()
    assert (out / "deployed" / "main").is_dir() and not (out / "deployed" / "release").exists()
    assert not (out / "never").exists()
    assert shown.returncode == 0, shown.stderr
    line = next(line for line in shown.stdout.splitlines() if "deploy" in line)
    assert "Skipped" in line and "when { branch == 'main' } was false" in line, shown.stdout
