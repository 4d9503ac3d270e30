"""Gitea and GitLab push hooks on a real `otto server`, for commits of real repositories
served by `git daemon`: their own secret headers, events, delivery ids and payloads."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hookkit import Repo, git_daemon, make_repo

from serverkit import running_server, wait_for

GITEA_SECRET, GITLAB_TOKEN = "gitea-secret", "gitlab-token"
OTTOFILE = "pipeline {\n  steps { sh 'true' }\n}\n"


@dataclass
class Forges:
    client: httpx.Client
    gitea: Repo
    gitlab: Repo


@pytest.fixture(scope="module")
def forges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Forges]:
    tmp = tmp_path_factory.mktemp("forges")
    served = tmp / "served"
    with git_daemon(served) as base:
        gitea = make_repo(served, base, "team/gitea-app.git", tmp)
        gitlab = make_repo(served, base, "group/gitlab-app.git", tmp)
        projects = tmp / "home" / "projects.d"
        projects.mkdir(parents=True)
        (projects / "gt.yml").write_text(f"source: {{url: '{gitea.url}'}}\nsecret_env: GT\n")
        (projects / "gl.yml").write_text(
            f"source: {{url: '{gitlab.url}', refspec: [main, 'v*']}}\nsecret_env: GL\n"
        )
        env = {"GT": GITEA_SECRET, "GL": GITLAB_TOKEN, "OTTO_LOCAL_ORCHESTRATOR": "0"}
        with running_server(tmp / "home", **env) as server, server.client() as client:
            yield Forges(client, gitea, gitlab)


def runs_of(client: httpx.Client, sha: str) -> list[dict[str, Any]]:
    return [r for r in client.get("/v1/pipelines").json()["pipelines"] if r["sha"] == sha]


def gitea_push(repo: Repo, sha: str) -> bytes:
    """Gitea's push payload (GitHub's shape, Gitea's extras)."""
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "before": "0" * 40,
            "after": sha,
            "compare_url": "",
            "commits": [{"id": sha, "message": "change\n", "url": "http://gitea/x"}],
            "head_commit": {"id": sha, "message": "change\n"},
            "repository": {
                "id": 3,
                "full_name": "team/gitea-app",
                "clone_url": repo.url,
                "html_url": "http://gitea.example/team/gitea-app",
                "default_branch": "main",
            },
            "pusher": {"login": "ada", "username": "ada"},
            "sender": {"login": "ada"},
        }
    ).encode()


def to_gitea(client: httpx.Client, body: bytes, signature: str | None, delivery: str) -> Any:
    headers = {"Content-Type": "application/json", "X-Gitea-Event": "push",
               "X-Gitea-Delivery": delivery}  # fmt: skip
    if signature is not None:
        headers["X-Gitea-Signature"] = signature
    return client.post("/v1/webhooks/gitea", content=body, headers=headers)


def gitlab_push(repo: Repo, sha: str, ref: str = "refs/heads/main", **extra: Any) -> bytes:
    """GitLab's Push Hook payload, as its documentation shows it."""
    payload = {
        "object_kind": "push",
        "event_name": "push",
        "before": "0" * 40,
        "after": sha,
        "ref": ref,
        "checkout_sha": sha,
        "user_name": "Ada Lovelace",
        "user_username": "ada",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": "gitlab-app",
            "web_url": "http://gitlab.example/group/gitlab-app",
            "git_ssh_url": "git@gitlab.example:group/gitlab-app.git",
            "git_http_url": repo.url,
            "path_with_namespace": "group/gitlab-app",
            "default_branch": "main",
        },
        "commits": [{"id": sha, "message": "change\n\nmore", "timestamp": "2026-01-01T00:00:00Z"}],
        "total_commits_count": 1,
        "repository": {"name": "gitlab-app", "url": "git@gitlab.example:group/gitlab-app.git"},
    }
    payload.update(extra)
    return json.dumps(payload).encode()


def to_gitlab(
    client: httpx.Client, body: bytes, token: str | None, key: str | None, event: str = "Push Hook"
) -> Any:
    headers = {"Content-Type": "application/json", "X-Gitlab-Event": event,
               "X-Gitlab-Event-UUID": str(uuid.uuid4())}  # fmt: skip
    if key is not None:
        headers["Idempotency-Key"] = key
    if token is not None:
        headers["X-Gitlab-Token"] = token
    return client.post("/v1/webhooks/gitlab", content=body, headers=headers)


def test_gitea_push_hooks(forges: Forges) -> None:
    client, repo = forges.client, forges.gitea
    sha = repo.commit({"Ottofile": OTTOFILE, "forge": "gitea"})
    repo.push("main")
    body = gitea_push(repo, sha)
    good = hmac.new(GITEA_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert to_gitea(client, body, None, "g-1").status_code == 401
    assert to_gitea(client, body, "0" * 64, "g-1").json()["error"]["code"] == "bad_signature"
    github_style = to_gitea(client, body, "sha256=" + good, "g-1")  # not Gitea's format
    assert github_style.status_code == 401
    answer = to_gitea(client, body, good, "g-1")
    assert answer.status_code == 202 and answer.json()["accepted"] is True
    again = to_gitea(client, body, good, "g-1")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    runs = wait_for(lambda: runs_of(client, sha), what="the Gitea pipeline")
    assert [(r["repo"], r["ref"]) for r in runs] == [(repo.url, "refs/heads/main")]


def test_a_gitea_push_keeps_its_pusher_and_message(forges: Forges) -> None:
    """Gitea names the pusher by `login`/`username` and may send no `head_commit`: the
    message is the pushed commit's, the last of `commits[]`."""
    client, repo = forges.client, forges.gitea
    older = repo.commit({"Ottofile": OTTOFILE, "n": "1"}, "older")
    sha = repo.commit({"Ottofile": OTTOFILE, "n": "2"}, "Fix the build\n\nat last")
    repo.push("main")
    payload = json.loads(gitea_push(repo, sha))
    del payload["head_commit"]
    payload["pusher"] = {"id": 1, "login": "grace", "full_name": "", "username": "grace"}
    payload["commits"] = [
        {"id": older, "message": "older\n"},
        {"id": sha, "message": "Fix the build\n\nat last\n"},
    ]
    body = json.dumps(payload).encode()
    signature = hmac.new(GITEA_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert to_gitea(client, body, signature, str(uuid.uuid4())).status_code == 202
    run = wait_for(lambda: runs_of(client, sha), what="the Gitea pipeline")[0]
    shown = client.get(f"/v1/pipelines/{run['uuid']}").json()
    assert (shown["trigger"], shown["message"]) == ("push by grace", "Fix the build")


def test_gitea_and_gitlab_take_json_only(forges: Forges) -> None:
    body = gitea_push(forges.gitea, "e" * 40)
    signature = hmac.new(GITEA_SECRET.encode(), body, hashlib.sha256).hexdigest()
    for path, headers in (
        ("/v1/webhooks/gitea", {"X-Gitea-Event": "push", "X-Gitea-Signature": signature,
                                "X-Gitea-Delivery": "ct-1"}),
        ("/v1/webhooks/gitlab", {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": GITLAB_TOKEN,
                                 "X-Gitlab-Event-UUID": "ct-2"}),
    ):  # fmt: skip
        form = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
        payload = gitlab_push(forges.gitlab, "e" * 40) if "gitlab" in path else body
        answer = forges.client.post(path, content=payload, headers=form)
        assert answer.status_code == 415, answer.text
        assert answer.json()["error"]["accepted"] == ["application/json"]


def test_gitlab_push_hooks(forges: Forges) -> None:
    client, repo = forges.client, forges.gitlab
    sha = repo.commit({"Ottofile": OTTOFILE, "forge": "gitlab"})
    repo.push("main")
    body = gitlab_push(repo, sha)
    unsigned = to_gitlab(client, body, None, "k-1")
    assert unsigned.status_code == 401 and "X-Gitlab-Token" in unsigned.json()["error"]["message"]
    assert to_gitlab(client, body, GITLAB_TOKEN + "x", "k-1").status_code == 401
    assert to_gitlab(client, body, GITEA_SECRET, "k-1").status_code == 404  # not this repo's
    answer = to_gitlab(client, body, GITLAB_TOKEN, "k-1")
    assert answer.status_code == 202 and answer.json()["accepted"] is True
    retried = to_gitlab(client, body, GITLAB_TOKEN, "k-1")  # GitLab's retry: same key
    assert retried.status_code == 200 and retried.json()["duplicate"] is True
    runs = wait_for(lambda: runs_of(client, sha), what="the GitLab pipeline")
    assert [(r["repo"], r["ref"]) for r in runs] == [(repo.url, "refs/heads/main")]

    tag = gitlab_push(repo, sha, ref="refs/tags/v1.0")
    tagged = to_gitlab(client, tag, GITLAB_TOKEN, None, event="Tag Push Hook")
    assert tagged.status_code == 202 and tagged.json()["accepted"] is True  # a tag runs again
    both = wait_for(lambda: len(runs_of(client, sha)) == 2 and runs_of(client, sha), what="it")
    assert {(r["ref"], r["event"]) for r in both} == {
        ("refs/heads/main", "push"), ("refs/tags/v1.0", "tag")
    }  # fmt: skip
    deleted = gitlab_push(repo, "0" * 40, checkout_sha=None)
    answer = to_gitlab(client, deleted, GITLAB_TOKEN, None)
    assert answer.status_code == 202 and answer.json()["ignored"] == "refs/heads/main was deleted"
    feature = to_gitlab(client, gitlab_push(repo, sha, ref="refs/heads/wip"), GITLAB_TOKEN, None)
    assert "outside the refspec" in feature.json()["ignored"]
    issue_body = json.dumps({"object_kind": "issue", "project": json.loads(body)["project"]})
    issue = to_gitlab(client, issue_body.encode(), GITLAB_TOKEN, None, event="Issue Hook")
    assert issue.status_code == 202 and "not handled" in issue.json()["ignored"]
    nameless = to_gitlab(client, gitlab_push(repo, sha, project=None), GITLAB_TOKEN, None)
    assert nameless.status_code == 422 and nameless.json()["error"]["field"] == "project"
    bad = to_gitlab(client, gitlab_push(repo, "nope"), GITLAB_TOKEN, None)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "after"
    headers = {"X-Gitlab-Token": GITLAB_TOKEN, "X-Gitlab-Event": "Push Hook"}
    no_id = client.post("/v1/webhooks/gitlab", content=body, headers=headers)
    assert no_id.status_code == 400 and "X-Gitlab-Event-UUID" in no_id.json()["error"]["message"]
    time.sleep(0.5)
    assert len(runs_of(client, sha)) == 2  # the push and the tag


def test_the_forge_endpoints_are_documented(forges: Forges) -> None:
    paths = forges.client.get("/openapi.json").json()["paths"]
    assert {"/v1/webhooks/github", "/v1/webhooks/gitea", "/v1/webhooks/gitlab"} <= set(paths)
