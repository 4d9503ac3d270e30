"""Pull and merge requests, and tags, as runs: repositories served by `git daemon` where
a request's commit lives under the forge's ref for it (`refs/pull/N/head`, a fork's
too), the forges' signed payloads, a real `otto server` and a fake GitHub statuses API.
The steps write what they were told (their run variables) and the commit they checked
out."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hookkit import (
    FakeGitHub,
    Repo,
    deliver,
    fake_github,
    git,
    git_daemon,
    make_repo,
    merge_request_payload,
    pull_request_payload,
    push_payload,
)

from serverkit import running_server, wait_for

SECRET, TOKEN, GITEA_SECRET, GITLAB_TOKEN = "s3cret-hook", "ghp_pr", "gitea-pr", "gitlab-pr"
# The server's API token: a fork's pull request runs only on a server that has one.
API_TOKEN = "otto-api-token"
SLOW = "pipeline {\n  stage {\n    name = 'slow'\n    steps { sh 'sleep 30' }\n  }\n}\n"
SEEN = ("OTTO_EVENT", "OTTO_BRANCH", "OTTO_TAG", "OTTO_SHA", "OTTO_PR", "OTTO_PROJECT", "PASSED")


@dataclass
class World:
    client: httpx.Client
    github: FakeGitHub
    served: Path
    base_url: str
    tmp: Path
    repos: dict[str, Repo]


def project_file(repo: Repo, secret_env: str, extra: str = "") -> str:
    return f"source:\n  url: {repo.url}\nsecret_env: {secret_env}\n{extra}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("pulls")
    served = tmp / "served"
    with git_daemon(served) as base, fake_github(TOKEN) as github:
        repos = {
            name: make_repo(served, base, path, tmp)
            for name, path in (
                ("app", "acme/app.git"),
                ("strict", "acme/strict.git"),
                ("gitea", "team/gitea-app.git"),
                ("gitlab", "group/gitlab-app.git"),
            )
        }
        projects = tmp / "home" / "projects.d"
        projects.mkdir(parents=True)
        statuses = f"statuses:\n  api_url: {github.url}\n  token_env: GH_TOKEN\n"
        (projects / "app.yml").write_text(
            project_file(repos["app"], "HOOK", "supersede: running\n" + statuses)
        )
        (projects / "strict.yml").write_text(
            project_file(repos["strict"], "HOOK", "forks: never\ndedup_pull_requests: true\n")
        )
        (projects / "gt.yml").write_text(project_file(repos["gitea"], "GT"))
        (projects / "gl.yml").write_text(project_file(repos["gitlab"], "GL"))
        for repo in repos.values():
            repo.commit({"README": "hello\n"}, "first")
            repo.push("main")
        env = {
            "HOOK": SECRET, "GH_TOKEN": TOKEN, "GT": GITEA_SECRET, "GL": GITLAB_TOKEN,
            "OTTO_AGENT_ENV_PASSTHROUGH": "PASSED", "PASSED": "passed-through",
            "OTTO_TOKEN": API_TOKEN,
        }  # fmt: skip
        with running_server(tmp / "home", **env) as server, server.client(API_TOKEN) as client:
            yield World(client, github, served, base, tmp, repos)


def telling(out: Path, name: str) -> str:
    """An Ottofile whose step writes its environment and checked-out commit to `out`."""
    return (
        "pipeline {\n  stage {\n    name = 'tell'\n    steps {\n"
        f"      sh 'env > {out}/{name}.env && git rev-parse HEAD > {out}/{name}.sha'\n"
        "    }\n  }\n}\n"
    )


def told(out: Path, name: str) -> tuple[dict[str, str], str]:
    """What the step of `telling(out, name)` was told (of SEEN), and the commit it had."""
    lines = (out / f"{name}.env").read_text().splitlines()
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    return {k: v for k, v in env.items() if k in SEEN}, (out / f"{name}.sha").read_text().strip()


def open_request(repo: Repo, number: int, files: dict[str, str], branch: str) -> str:
    """Commit `files` on `branch` and keep the commit as the forge does: `refs/pull/N/head`."""
    sha = repo.commit(files, f"work on {branch}")
    git("push", "-q", "-f", "origin", f"HEAD:refs/heads/{branch}", cwd=repo.work)
    git("push", "-q", "-f", "origin", f"HEAD:refs/pull/{number}/head", cwd=repo.work)
    return sha


def runs(client: httpx.Client, **query: str) -> list[dict[str, Any]]:
    return client.get("/v1/pipelines", params=query).json()["pipelines"]


def run_of(client: httpx.Client, sha: str, event: str) -> dict[str, Any] | None:
    found = [r for r in runs(client) if r["sha"] == sha and r["event"] == event]
    return client.get(f"/v1/pipelines/{found[0]['uuid']}").json() if found else None


def ended(client: httpx.Client, sha: str, event: str) -> dict[str, Any]:
    def complete() -> dict[str, Any] | None:
        run = run_of(client, sha, event)
        return run if run is not None and run["state"] == "Complete" else None

    return wait_for(complete, what=f"the {event} run of {sha[:8]} to end")


def running(client: httpx.Client, uuid: str) -> bool:
    run = client.get(f"/v1/pipelines/{uuid}").json()
    return run["batches"][0]["contexts"][0]["state"] == "Running"


def pull(world: World, repo: Repo, number: int, action: str, sha: str, branch: str,
         **extra: Any) -> httpx.Response:  # fmt: skip
    body = pull_request_payload(repo.url, "acme/" + repo.url.rsplit("/", 1)[1][:-4], number,
                                action, sha, branch, **extra)  # fmt: skip
    return deliver(world.client, body, SECRET, event="pull_request")


def test_a_pull_request_runs_each_head_supersedes_its_older_run_and_closing_aborts(
    world: World,
) -> None:
    app = world.repos["app"]
    first = open_request(app, 7, {"Ottofile": SLOW, "n": "1"}, "feature")
    sent = time.monotonic()
    answer = pull(world, app, 7, "opened", first, "feature")
    assert answer.status_code == 202 and answer.json()["accepted"] is True, answer.text
    wait_for(lambda: "pending" in world.github.of(first), what="the pending status")
    to_pending = time.monotonic() - sent
    print(f"PR webhook → pending commit status: {to_pending:.2f} s")
    older = wait_for(lambda: run_of(world.client, first, "pull_request"), what="the run")
    assert (older["ref"], older["trigger"], older["message"]) == (
        "refs/pull/7/head", "pull_request #7 by alice", "Add the feature"
    )  # fmt: skip
    assert older["trigger_details"] == {
        "number": 7, "source_branch": "feature", "target_branch": "main", "fork": False,
        "head_sha": first, "action": "opened",
    }  # fmt: skip
    wait_for(lambda: running(world.client, older["uuid"]), what="the first head to run")

    second = open_request(app, 7, {"Ottofile": SLOW, "n": "2"}, "feature")
    assert pull(world, app, 7, "synchronize", second, "feature").status_code == 202
    superseded = ended(world.client, first, "pull_request")
    assert (superseded["status"], superseded["abort_reason"]) == ("Aborted", "superseded")
    newer = wait_for(lambda: run_of(world.client, second, "pull_request"), what="the 2nd run")
    assert newer["ref"] == "refs/pull/7/head"
    wait_for(lambda: running(world.client, newer["uuid"]), what="the second head to run")

    closed = pull(world, app, 7, "closed", second, "feature")
    assert closed.status_code == 202
    aborted = ended(world.client, second, "pull_request")
    assert (aborted["status"], aborted["abort_reason"]) == ("Aborted", "pr_closed")
    of_request = [(r["sha"], r["event"]) for r in runs(world.client) if r["ref"] == aborted["ref"]]
    assert sorted(of_request) == sorted([(first, "pull_request"), (second, "pull_request")])
    delivered = closed.json()["delivery"]
    listed = world.client.get("/v1/webhooks/deliveries").json()["deliveries"]
    verdict = next(d for d in listed if d["delivery"] == delivered)
    assert (verdict["verdict"], verdict["reason"]) == (
        "aborted", "pull request #7 closed: 1 run(s) aborted"
    )  # fmt: skip
    labeled = pull(world, app, 7, "labeled", second, "feature")
    assert labeled.json() == {
        "accepted": False, "ignored": "pull_request action 'labeled' is not handled"
    }  # fmt: skip
    assert world.github.of(first)[0] == "pending" and world.github.problems == []
    assert {s["repo"] for s in world.github.statuses} == {"acme/app"}


def test_a_pull_request_runs_at_its_head_with_its_variables(world: World) -> None:
    app, out = world.repos["app"], world.tmp
    sha = open_request(app, 9, {"Ottofile": telling(out, "pr9")}, "topic")
    assert pull(world, app, 9, "opened", sha, "topic").status_code == 202
    run = ended(world.client, sha, "pull_request")
    assert run["status"] == "Success", run
    env, checked_out = told(out, "pr9")
    assert checked_out == sha
    assert env == {
        "OTTO_EVENT": "pull_request", "OTTO_BRANCH": "topic", "OTTO_SHA": sha, "OTTO_PR": "9",
        "OTTO_PROJECT": "app", "PASSED": "passed-through",
    }  # fmt: skip
    wait_for(lambda: world.github.of(sha) == ["pending", "success"], what="its statuses")


def test_a_forks_pull_request_runs_sandboxed_without_passthrough_variables(
    world: World,
) -> None:
    app, out = world.repos["app"], world.tmp
    fork = make_repo(world.served, world.base_url, "mallory/app.git", world.tmp)
    git("fetch", "-q", app.url, "main", cwd=fork.work)
    git("reset", "-q", "--hard", "FETCH_HEAD", cwd=fork.work)
    sha = fork.commit({"Ottofile": telling(out, "fork")}, "from a fork")
    fork.push("evil")
    git("push", "-q", app.url, "HEAD:refs/pull/8/head", cwd=fork.work)  # as GitHub keeps it
    answer = pull(world, app, 8, "opened", sha, "evil", head_full_name="mallory/app")
    assert answer.status_code == 202, answer.text
    run = ended(world.client, sha, "pull_request")
    assert run["status"] == "Success", run
    assert run["trigger_details"]["fork"] is True
    env, checked_out = told(out, "fork")
    assert checked_out == sha
    assert "PASSED" not in env  # passthrough variables are for trusted runs only
    assert (env["OTTO_BRANCH"], env["OTTO_PR"]) == ("evil", "8")


def test_dedup_and_forks_never_as_the_project_says(world: World) -> None:
    app, strict = world.repos["app"], world.repos["strict"]
    for repo, full_name in ((app, "acme/app"), (strict, "acme/strict")):
        pushed = repo.commit({"Ottofile": "pipeline {\n  steps { sh 'true' }\n}\n"}, "merged")
        repo.push("main")
        git("push", "-q", "origin", "HEAD:refs/pull/10/head", cwd=repo.work)
        body = push_payload(repo.url, full_name, "refs/heads/main", pushed)
        assert deliver(world.client, body, SECRET).status_code == 202
        assert ended(world.client, pushed, "push")["status"] == "Success"
        answer = pull(world, repo, 10, "opened", pushed, "main")
        if repo is app:  # a pull request of a commit that ran as a push runs again
            assert answer.status_code == 202 and answer.json()["accepted"] is True
            assert ended(world.client, pushed, "pull_request")["status"] == "Success"
        else:  # dedup_pull_requests: true
            assert answer.status_code == 200 and answer.json()["duplicate"] is True
            assert answer.json()["reason"] == f"commit {pushed} already built"
    fork = pull(world, strict, 11, "opened", "c" * 40, "x", head_full_name="mallory/strict")
    assert fork.status_code == 202
    assert fork.json()["ignored"] == "pull request #11 comes from a fork (forks: never)"


def test_a_tag_on_an_already_built_commit_runs_with_its_tag(world: World) -> None:
    app, out = world.repos["app"], world.tmp
    sha = app.commit({"Ottofile": telling(out, "tagged")}, "release me")
    app.push("main")
    body = push_payload(app.url, "acme/app", "refs/heads/main", sha)
    assert deliver(world.client, body, SECRET).status_code == 202
    assert ended(world.client, sha, "push")["status"] == "Success"
    git("tag", "v1.0", cwd=app.work)
    git("push", "-q", "origin", "v1.0", cwd=app.work)
    tag = push_payload(app.url, "acme/app", "refs/tags/v1.0", sha)
    answer = deliver(world.client, tag, SECRET)
    assert answer.status_code == 202 and answer.json()["accepted"] is True, answer.text
    run = ended(world.client, sha, "tag")
    assert (run["status"], run["ref"], run["trigger_details"]) == (
        "Success", "refs/tags/v1.0", {"tag": "v1.0"}
    )  # fmt: skip
    env, checked_out = told(out, "tagged")
    assert (env["OTTO_TAG"], env["OTTO_EVENT"], checked_out) == ("v1.0", "tag", sha)
    again = deliver(world.client, tag, SECRET, delivery=answer.json()["delivery"])
    assert again.json()["duplicate"] is True  # a redelivery is still one run
    deleted = push_payload(app.url, "acme/app", "refs/tags/v1.0", "0" * 40, deleted=True)
    assert deliver(world.client, deleted, SECRET).json()["ignored"] == "refs/tags/v1.0 was deleted"
    assert len([r for r in runs(world.client) if r["sha"] == sha]) == 2


def gitea_pull(repo: Repo, number: int, action: str, sha: str, branch: str) -> bytes:
    """Gitea's `pull_request` payload: GitHub's shape with Gitea's own fields."""
    repository = {
        "id": 3, "name": "gitea-app", "full_name": "team/gitea-app", "clone_url": repo.url,
        "html_url": "http://gitea.example/team/gitea-app", "default_branch": "main",
        "owner": {"id": 1, "login": "team", "username": "team"},
    }  # fmt: skip
    user = {"id": 2, "login": "carol", "username": "carol", "full_name": "Carol"}
    payload = {
        "action": action,
        "number": number,
        "pull_request": {
            "id": 40, "url": f"http://gitea.example/team/gitea-app/pulls/{number}",
            "number": number, "user": user, "title": "Gitea change", "body": "",
            "state": "open", "merged": False, "merge_commit_sha": None,
            "head": {"label": branch, "ref": branch, "sha": sha, "repo_id": 3,
                     "repo": repository},
            "base": {"label": "main", "ref": "main", "sha": "1" * 40, "repo_id": 3,
                     "repo": repository},
        },
        "repository": repository,
        "sender": user,
    }  # fmt: skip
    return json.dumps(payload).encode()


def to_forge(client: httpx.Client, forge: str, event: str, body: bytes) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if forge == "gitea":
        signature = hmac.new(GITEA_SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers |= {"X-Gitea-Event": event, "X-Gitea-Delivery": str(uuid.uuid4()),
                    "X-Gitea-Signature": signature}  # fmt: skip
    else:
        headers |= {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": str(uuid.uuid4()),
                    "X-Gitlab-Token": GITLAB_TOKEN}  # fmt: skip
    return client.post(f"/v1/webhooks/{forge}", content=body, headers=headers)


def test_gitea_and_gitlab_requests_run_their_heads(world: World) -> None:
    gitea, gitlab, out = world.repos["gitea"], world.repos["gitlab"], world.tmp
    sha = open_request(gitea, 4, {"Ottofile": telling(out, "gitea")}, "gt-topic")
    answer = to_forge(world.client, "gitea", "pull_request", gitea_pull(gitea, 4, "opened", sha,
                                                                         "gt-topic"))  # fmt: skip
    assert answer.status_code == 202, answer.text
    run = ended(world.client, sha, "pull_request")
    assert (run["status"], run["ref"], run["trigger"]) == (
        "Success", "refs/pull/4/head", "pull_request #4 by carol"
    )  # fmt: skip
    assert told(out, "gitea")[0]["OTTO_PR"] == "4"
    newer = open_request(gitea, 4, {"Ottofile": telling(out, "gitea2")}, "gt-topic")
    synced = gitea_pull(gitea, 4, "synchronized", newer, "gt-topic")  # Gitea's word for it
    assert to_forge(world.client, "gitea", "pull_request", synced).status_code == 202
    assert ended(world.client, newer, "pull_request")["status"] == "Success"

    mr = gitlab.commit({"Ottofile": telling(out, "gitlab")}, "gitlab work")
    git("push", "-q", "origin", "HEAD:refs/merge-requests/3/head", cwd=gitlab.work)
    body = merge_request_payload(gitlab.url, "group/gitlab-app", 3, "open", mr, "gl-topic")
    assert to_forge(world.client, "gitlab", "Merge Request Hook", body).status_code == 202
    run = ended(world.client, mr, "pull_request")
    assert (run["status"], run["ref"], run["trigger"]) == (
        "Success", "refs/merge-requests/3/head", "pull_request #3 by bob"
    )  # fmt: skip
    env, checked_out = told(out, "gitlab")
    assert (env["OTTO_BRANCH"], env["OTTO_PR"], checked_out) == ("gl-topic", "3", mr)
    merged = merge_request_payload(gitlab.url, "group/gitlab-app", 3, "merge", mr, "gl-topic")
    answer = to_forge(world.client, "gitlab", "Merge Request Hook", merged)
    assert answer.status_code == 202 and answer.json()["accepted"] is True


def test_an_unsandboxed_orchestrator_refuses_a_forks_pull_request(tmp_path: Path) -> None:
    served = tmp_path / "served"
    with git_daemon(served) as base:
        app = make_repo(served, base, "acme/app.git", tmp_path)
        app.commit({"Ottofile": "pipeline {\n  steps { sh 'true' }\n}\n"}, "first")
        app.push("main")
        git("push", "-q", "origin", "HEAD:refs/pull/5/head", cwd=app.work)
        git("push", "-q", "origin", "HEAD:refs/pull/6/head", cwd=app.work)
        sha = git("rev-parse", "HEAD", cwd=app.work)
        home = tmp_path / "home"
        (home / "projects.d").mkdir(parents=True)
        (home / "projects.d" / "app.yml").write_text(project_file(app, "HOOK"))
        with (
            running_server(home, HOOK=SECRET, OTTO_SANDBOX="none", OTTO_TOKEN=API_TOKEN) as server,
            server.client(API_TOKEN) as client,
        ):
            for number, head in ((5, "mallory/app"), (6, "acme/app")):
                body = pull_request_payload(app.url, "acme/app", number, "opened", sha, "f",
                                            head_full_name=head)  # fmt: skip
                assert deliver(client, body, SECRET, event="pull_request").status_code == 202

            def both() -> list[dict[str, Any]] | None:
                found = [client.get(f"/v1/pipelines/{r['uuid']}").json() for r in runs(client)]
                return found if len(found) == 2 and all(
                    r["state"] == "Complete" for r in found) else None  # fmt: skip

            by_ref = {r["ref"]: r for r in wait_for(both, what="both runs to end")}
    fork, trusted = by_ref["refs/pull/5/head"], by_ref["refs/pull/6/head"]
    assert trusted["status"] == "Success", trusted
    context = fork["batches"][0]["contexts"][0]
    assert (fork["status"], context["status"]) == ("Error", "Error")
    assert context["reason"].startswith("untrusted_unsandboxed: a pull request from a fork")
