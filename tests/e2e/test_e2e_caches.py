"""Caches on a real server, runs sandboxed as usual: a project's pip-like 50 MB cache is
saved by run 1 and restored by run 2, which skips the "download"; a feature branch's
first run restores the default branch's cache; past `cache_limit_mb` the least recently
used caches go (`otto gc`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from agentkit import git, git_daemon, make_repo
from serverkit import Server, running_server

from .e2ekit import Run, contexts, object_bytes, step_log_key, wait_complete

# Run 1 "downloads" 50 incompressible 1 MB wheels (slowly); a run that restored them skips it.
OTTOFILE = """pipeline {
    stage {
        name = 'deps'
        cache {
            use pip
            pip = ['.cache/pip/']
            key = 'requirements.txt'
        }
        steps {
            sh 'if [ -d .cache/pip ]; then echo "pip: cached"; else
                mkdir -p .cache/pip && sleep 2
                for i in $(seq 1 50); do head -c 1000000 /dev/urandom > .cache/pip/w-$i.whl; done
                echo "pip: downloaded"; fi'
        }
    }
    stage {
        name = 'test'
        cache { use pip  key = 'requirements.txt' }
        steps { sh 'ls .cache/pip | wc -l' }
    }
}
"""


@dataclass
class Project:
    server: Server
    client: httpx.Client
    repo: Path


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    served = tmp_path / "served"
    repo = served / "app"
    make_repo(repo, {"Ottofile": OTTOFILE, "requirements.txt": "requests==2.31\n"})
    git("branch", "feature/login", cwd=repo)
    with git_daemon(served) as base:
        home = tmp_path / "home"
        (home / "projects.d").mkdir(parents=True)
        (home / "projects.d" / "app.yml").write_text(
            f"source:\n  url: {base}/app\nsecret_env: APP_HOOK_SECRET\ndefault_branches: [main]\n"
            "retention:\n  cache_limit_mb: 60\n"
        )
        env = {"APP_HOOK_SECRET": "s3cret", "OTTO_JANITOR_INTERVAL": "3600"}
        with running_server(home, **env) as server, server.client() as client:
            yield Project(server, client, repo)


def trigger(project: Project, ref: str) -> tuple[Run, float]:
    started = time.monotonic()
    answer = project.client.post("/v1/projects/app/runs", json={"ref": ref}, timeout=60)
    assert answer.status_code == 201, answer.text
    run = wait_complete(project.client, answer.json()["uuid"], 120)
    return run, time.monotonic() - started


def log(project: Project, run: Run, context: str, step: int) -> str:
    found = contexts(run)[context]
    text = object_bytes(project.client, step_log_key(run, found, step))
    assert text is not None
    return text.decode()


def test_caches_across_runs_branches_and_retention(project: Project) -> None:
    first, cold = trigger(project, "main")
    assert first["status"] == "Success", first
    steps = contexts(first)["deps"]["steps"]
    assert len(steps) == 3  # cache-restore, sh, cache-save: steps in the timeline
    assert "no cache yet" in log(project, first, "deps", 0)
    assert log(project, first, "deps", 1).splitlines()[-1] == "pip: downloaded"
    assert log(project, first, "deps", 2).startswith("cache pip: saved 50.")
    # The next stage of the same run restores what this one saved.
    assert "restored" in log(project, first, "test", 0)
    assert log(project, first, "test", 1).splitlines()[-1].strip() == "50"

    second, warm = trigger(project, "main")
    assert second["status"] == "Success"
    assert log(project, second, "deps", 0).startswith("cache pip: restored 50.")
    assert log(project, second, "deps", 1).splitlines()[-1] == "pip: cached"
    print(f"\nthe pip-like run: 1st (download) {cold:.2f} s, 2nd (cache) {warm:.2f} s")

    feature, _ = trigger(project, "feature/login")
    assert feature["status"] == "Success"
    assert "(from main)" in log(project, feature, "deps", 0)
    assert log(project, feature, "deps", 1).splitlines()[-1] == "pip: cached"
    assert "trigger_details" in feature and "default_branch" not in feature["trigger_details"]

    # Two caches of ~50 MB do not fit in 60 MB: the least recently used one goes.
    listed = gc(project.server, "--dry-run")
    assert [c["key"].split("/")[2] for c in listed["caches"]] == ["main"]
    assert listed["caches"][0]["bytes"] > 50_000_000
    gc(project.server)
    keys = [o["key"] for o in project.client.get("/v1/objects?prefix=caches/").json()]
    assert len([k for k in keys if not k.endswith(".used")]) == 1
    assert all(k.startswith("caches/app/feature~login/pip/") for k in keys), keys


def gc(server: Server, *args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "otto.cli", "gc", "--json", *args, "--server", server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    answer: dict[str, object] = json.loads(done.stdout)
    return answer
