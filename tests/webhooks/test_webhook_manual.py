"""Runs by hand: `POST /v1/projects/{name}/runs` and `otto trigger`, against a real
`otto server`, a repository served by `git daemon`, and the `otto` command as a process."""

from __future__ import annotations

import getpass
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hookkit import FakeGitHub, Repo, fake_github, git, git_daemon, make_repo

from serverkit import running_server, wait_for

OTTOFILE = "pipeline {\n  stage {\n    name = 'build'\n    steps { sh 'true' }\n  }\n}\n"


@dataclass
class Manual:
    repo: Repo
    client: httpx.Client
    url: str
    github: FakeGitHub
    main: str  # the commit of main (tagged v1.0, annotated)
    feature: str  # the commit of branch feature


@pytest.fixture
def manual(tmp_path: Path) -> Iterator[Manual]:
    served = tmp_path / "served"
    with git_daemon(served) as base, fake_github("ghp_token") as github:
        repo = make_repo(served, base, "acme/app.git", tmp_path)
        main = repo.commit({"Ottofile": OTTOFILE})
        repo.push("main")
        git("tag", "-a", "-m", "release", "v1.0", cwd=repo.work)
        git("push", "-q", "origin", "refs/tags/v1.0", cwd=repo.work)
        feature = repo.commit({"README": "feature\n"})
        repo.push("feature")
        home = tmp_path / "home"
        (home / "projects.d").mkdir(parents=True)
        (home / "projects.d" / "app.yml").write_text(
            f"source:\n  url: {repo.url}\nsecret_env: APP_HOOK_SECRET\n"
            "default_branches: [trunk, main]\n"  # no trunk in the repository: main is used
            f"statuses:\n  api_url: {github.url}\n  token_env: APP_GITHUB_TOKEN\n"
        )
        env = {"APP_HOOK_SECRET": "s3cret", "APP_GITHUB_TOKEN": "ghp_token"}
        with running_server(home, **env) as server, server.client() as client:
            yield Manual(repo, client, server.url, github, main, feature)


def trigger(manual: Manual, **body: Any) -> httpx.Response:
    return manual.client.post("/v1/projects/app/runs", json=body, timeout=60)


def completed(client: httpx.Client, uuid: str) -> dict[str, Any] | None:
    run = client.get(f"/v1/pipelines/{uuid}").json()
    return run if run["state"] == "Complete" else None


def test_a_run_by_hand_at_the_default_branch_a_branch_a_tag_or_a_commit(manual: Manual) -> None:
    first = trigger(manual)
    assert first.status_code == 201, first.text
    assert first.json()["sha"] == manual.main and first.json()["ref"] == "refs/heads/main"
    run = wait_for(lambda: completed(manual.client, first.json()["uuid"]), what="the run")
    assert run["status"] == "Success", run
    assert (run["event"], run["trigger"], run["project"]) == ("manual", "manual by api", "app")
    assert (run["ref"], run["sha"], run["trigger_details"]) == (
        "refs/heads/main",
        manual.main,
        {"env": {}},
    )
    wait_for(lambda: manual.github.of(manual.main) == ["pending", "success"], what="statuses")
    assert manual.github.statuses[-1]["repo"] == "acme/app" and manual.github.problems == []

    again = trigger(manual, by="alice", env={"GREETING": "hi there", "N": ""})
    assert again.status_code == 201, again.text  # the commit ran already: it runs anyway
    assert again.json()["uuid"] != first.json()["uuid"]
    shown = manual.client.get(f"/v1/pipelines/{again.json()['uuid']}").json()
    assert shown["trigger"] == "manual by alice"
    assert shown["trigger_details"] == {"env": {"GREETING": "hi there", "N": ""}}

    branch = trigger(manual, ref="feature").json()
    assert (branch["ref"], branch["sha"]) == ("refs/heads/feature", manual.feature)
    tag = trigger(manual, ref="v1.0").json()  # an annotated tag: the commit it names
    assert (tag["ref"], tag["sha"]) == ("refs/tags/v1.0", manual.main)
    both = trigger(manual, ref="feature", sha=manual.main).json()  # a commit, named for a branch
    assert (both["ref"], both["sha"]) == ("refs/heads/feature", manual.main)
    bare = trigger(manual, sha=manual.feature).json()
    assert (bare["ref"], bare["sha"]) == (None, manual.feature)
    run = wait_for(lambda: completed(manual.client, bare["uuid"]), what="the run of a commit")
    assert (run["status"], run["ref"], run["sha"]) == ("Success", None, manual.feature)


BAD_REQUESTS = [  # body, the field named, what the message says
    ({"ref": "nope"}, "ref", "no branch or tag 'nope'"),
    ({"sha": "0" * 40}, "sha", f"no commit {'0' * 40}"),
    ({"sha": "abc"}, "sha", "sha"),
    ({"ref": "a b"}, "ref", "ref"),
    ({"ref": "x/../y"}, "ref", "not a branch or tag name"),
    ({"env": {"1BAD": "x"}}, "env", "'1BAD' is not a variable name"),
    ({"env": {"OK": 1}}, "env.OK", "env.OK"),
    ({"env": {f"V{i}": "" for i in range(51)}}, "env", "at most 50"),
    ({"by": "a b"}, "by", "by"),
    ({"branch": "main"}, "branch", "branch"),
]


def test_a_bad_request_is_refused_naming_the_field(manual: Manual) -> None:
    for body, field, said in BAD_REQUESTS:
        answer = trigger(manual, **body)
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["field"] == field and said in error["message"], (body, error)
    assert manual.client.get("/v1/pipelines").json()["pipelines"] == []


def test_an_unknown_project_is_404(manual: Manual) -> None:
    answer = manual.client.post("/v1/projects/nope/runs", json={})
    assert answer.status_code == 404
    assert answer.json()["error"] == {
        "code": "not_found",
        "message": "no project 'nope'",
        "field": "name",
    }


def test_an_ottofile_that_does_not_parse_is_a_visible_error_run(manual: Manual) -> None:
    manual.repo.commit({"Ottofile": "pipeline {\n  oops\n}\n"})
    manual.repo.push("broken")
    answer = trigger(manual, ref="broken")
    assert answer.status_code == 201, answer.text
    run = wait_for(lambda: completed(manual.client, answer.json()["uuid"]), what="the run")
    assert run["status"] == "Error" and run["rejected"]["reason"] == "config_error"
    assert run["rejected"]["message"].startswith("Ottofile:2:3: ")


def otto(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "otto.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_otto_trigger(manual: Manual) -> None:
    done = otto("trigger", "app", "--ref", "feature", "-e", "A=1", "-e", "B=x=y",
                "--server", manual.url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    uuid = done.stdout.split()[2]
    assert done.stdout.startswith(f"started pipeline {uuid} of app at refs/heads/feature")
    assert f"otto logs {uuid[:8]} --follow" in done.stdout
    run = manual.client.get(f"/v1/pipelines/{uuid}").json()
    assert (run["sha"], run["event"]) == (manual.feature, "manual")
    assert run["trigger"] == f"manual by {getpass.getuser()}"
    assert run["trigger_details"] == {"env": {"A": "1", "B": "x=y"}}

    by_sha = otto("trigger", "app", "--sha", manual.main, "--server", manual.url)
    assert by_sha.returncode == 0, by_sha.stderr
    assert f"at {manual.main} " in by_sha.stdout

    bad = otto("trigger", "app", "-e", "NOEQUALS", "--server", manual.url)
    assert bad.returncode == 64
    assert bad.stderr.endswith("Error: Invalid value for -e: 'NOEQUALS': expected KEY=VALUE\n")
    unknown = otto("trigger", "nope", "--server", manual.url)
    assert (unknown.returncode, unknown.stderr) == (65, "otto: no project 'nope'\n")
    missing = otto("trigger", "app", "--ref", "gone", "--server", manual.url)
    assert missing.returncode == 65 and "no branch or tag 'gone'" in missing.stderr
