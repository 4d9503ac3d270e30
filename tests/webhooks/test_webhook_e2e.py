"""As a team would use it: a repository served by `git daemon`, a project pointing at it,
`git push`, the signed push payload a forge sends, a real `otto server`, a fake GitHub."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hookkit import (
    FakeGitHub,
    Repo,
    as_form,
    deliver,
    fake_github,
    git_daemon,
    make_repo,
    push_payload,
)

from otto.parser import ParseError, parse
from serverkit import orchestrator, running_server, wait_for

SECRET, TOKEN = "s3cret-hook", "ghp_test_token"
FULL_NAME = "acme/app"


@dataclass
class World:
    repo: Repo
    client: httpx.Client
    github: FakeGitHub
    out: Path


@contextmanager
def start_world(tmp_path: Path, extra: str = "", **server_env: str) -> Iterator[World]:
    served = tmp_path / "served"
    with git_daemon(served) as base, fake_github(TOKEN) as github:
        repo = make_repo(served, base, "acme/app.git", tmp_path)
        home = tmp_path / "home"
        (home / "projects.d").mkdir(parents=True)
        (home / "projects.d" / "app.yml").write_text(
            "title: The app\n"
            f"source:\n  url: {repo.url}\n  refspec: ['main', 'release/*']\n"
            "secret_env: APP_HOOK_SECRET\n"
            f"statuses:\n  api_url: {github.url}\n  token_env: APP_GITHUB_TOKEN\n" + extra
        )
        env = {"APP_HOOK_SECRET": SECRET, "APP_GITHUB_TOKEN": TOKEN, **server_env}
        with running_server(home, **env) as server, server.client() as client:
            yield World(repo, client, github, tmp_path)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with start_world(tmp_path) as world:
        yield world


def ottofile(out: Path) -> str:
    return (
        "pipeline {\n  stage {\n    name = 'build'\n    steps {\n"
        f"      sh 'test -f README && git rev-parse HEAD > {out}/sha.txt'\n"
        "    }\n  }\n}\n"
    )


def finished(client: httpx.Client, uuid: str) -> dict[str, Any] | None:
    run = client.get(f"/v1/pipelines/{uuid}").json()
    return run if run["state"] == "Complete" else None


def pipelines(client: httpx.Client) -> list[dict[str, Any]]:
    return client.get("/v1/pipelines").json()["pipelines"]


def push_and_finish(world: World, files: dict[str, str]) -> Any:
    """Commit `files`, push main, deliver the forge's signed payload: (sha, the ended run)."""
    sha = world.repo.commit(files)
    world.repo.push("main")
    body = push_payload(world.repo.url, FULL_NAME, "refs/heads/main", sha)
    answer = deliver(world.client, body, SECRET)
    assert answer.status_code == 202, answer.text
    runs = wait_for(lambda: pipelines(world.client), what="a pipeline")
    return sha, wait_for(lambda: finished(world.client, runs[0]["uuid"]), what="the run to end")


def test_a_remote_orchestrator_checks_out_the_pushed_commit_too(tmp_path: Path) -> None:
    with (
        start_world(tmp_path, OTTO_LOCAL_ORCHESTRATOR="0") as world,
        orchestrator(str(world.client.base_url), "far", tmp_path / "far"),
    ):
        files = {"README": "hello\n", "Ottofile": ottofile(world.out)}
        sha, run = push_and_finish(world, files)
    assert run["status"] == "Success", run
    assert run["batches"][0]["contexts"][0]["orchestrator"] == "far"
    assert (world.out / "sha.txt").read_text().strip() == sha


def test_push_runs_the_pipeline_at_the_pushed_commit(world: World) -> None:
    sha = world.repo.commit({"README": "hello\n", "Ottofile": ottofile(world.out)})
    world.repo.push("main")
    body = push_payload(world.repo.url, FULL_NAME, "refs/heads/main", sha)
    answer = deliver(world.client, body, SECRET, delivery="d-1")
    assert answer.status_code == 202, answer.text

    runs = wait_for(lambda: pipelines(world.client), what="a pipeline")
    assert [(r["repo"], r["ref"], r["sha"]) for r in runs] == [
        (world.repo.url, "refs/heads/main", sha)
    ]
    run = wait_for(lambda: finished(world.client, runs[0]["uuid"]), what="the run to end")
    assert run["status"] == "Success", run
    assert (world.out / "sha.txt").read_text().strip() == sha
    wait_for(lambda: world.github.of(sha) == ["pending", "success"], what="two statuses")
    assert world.github.problems == []
    final = world.github.statuses[-1]
    assert final["repo"] == FULL_NAME and final["context"] == "otto"
    assert final["target_url"] == f"{world.client.base_url}/pipelines/{runs[0]['uuid']}"
    assert httpx.get(final["target_url"]).status_code == 200  # the run's page in the dashboard

    page = f"{world.client.base_url}/pipelines/{runs[0]['uuid']}"
    again = deliver(world.client, body, SECRET, delivery="d-1")  # a redelivery
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert (again.json()["uuid"], again.json()["url"]) == (runs[0]["uuid"], page)
    other_branch = push_payload(world.repo.url, FULL_NAME, "refs/heads/release/1", sha)
    built = deliver(world.client, other_branch, SECRET, delivery="d-b")  # the same commit
    assert built.status_code == 200 and built.json()["duplicate"] is True
    assert (built.json()["uuid"], built.json()["url"]) == (runs[0]["uuid"], page)
    assert built.json()["reason"] == f"commit {sha} already built"
    forged = deliver(world.client, body.replace(b"main", b"evil"), None, delivery="d-2")
    assert forged.status_code == 401
    wrong = deliver(world.client, body, "not-the-secret", delivery="d-3")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "bad_signature"
    retried = deliver(world.client, body, SECRET, delivery="d-3")  # the refusal kept no id
    assert retried.status_code == 200 and retried.json()["uuid"] == runs[0]["uuid"]
    listed = world.client.get("/v1/webhooks/deliveries").json()["deliveries"]
    assert [(d["delivery"], d["verdict"], d["status"], d["pipeline"]) for d in listed] == [
        ("d-3", "built", 200, runs[0]["uuid"]),
        ("d-3", "refused", 401, None),
        ("d-2", "refused", 401, None),
        ("d-b", "built", 200, runs[0]["uuid"]),
        ("d-1", "redelivery", 200, runs[0]["uuid"]),
        ("d-1", "created", 202, runs[0]["uuid"]),
    ]
    assert listed[1]["reason"] == "X-Hub-Signature-256 does not match"
    assert listed[0]["forge"] == "github" and listed[0]["event"] == "push"
    assert listed[0]["url"] == page and listed[0]["received_at"].endswith("+00:00")
    time.sleep(1.0)  # give the worker time to (wrongly) create something
    assert len(pipelines(world.client)) == 1
    assert world.github.of(sha) == ["pending", "success"]


def test_a_form_encoded_delivery_runs(world: World) -> None:
    """GitHub's default content type: the JSON in a `payload` form field, signed as sent."""
    sha = world.repo.commit({"README": "hello\n", "Ottofile": ottofile(world.out)})
    world.repo.push("main")
    form = as_form(push_payload(world.repo.url, FULL_NAME, "refs/heads/main", sha))
    answer = deliver(world.client, form, SECRET, content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 202, answer.text
    runs = wait_for(lambda: pipelines(world.client), what="a pipeline")
    run = wait_for(lambda: finished(world.client, runs[0]["uuid"]), what="the run to end")
    assert (run["sha"], run["status"]) == (sha, "Success")
    assert (world.out / "sha.txt").read_text().strip() == sha


def test_a_broken_ottofile_is_a_visible_error_run(world: World) -> None:
    broken = "pipeline {\n  stage {\n    steps { sh 'make' }\n  }\n  oops\n}\n"
    with pytest.raises(ParseError) as parsed:
        parse(broken, "Ottofile")
    sha, run = push_and_finish(world, {"README": "x\n", "Ottofile": broken})
    assert run["status"] == "Error"
    moves = world.client.get(f"/v1/pipelines/{run['uuid']}/transitions").json()
    ended = moves[-1] if isinstance(moves, list) else moves["transitions"][-1]
    assert ended["reason"] == "config_error"
    assert ended["data"]["message"] == str(parsed.value)
    assert str(parsed.value).startswith("Ottofile:5:3: ")
    wait_for(lambda: world.github.of(sha) == ["pending", "error"], what="pending, then error")
    assert "Ottofile:5:3: " in world.github.statuses[-1]["description"]
    assert world.github.problems == []


def test_a_step_called_wrongly_is_refused_before_anything_runs(world: World) -> None:
    ran = world.out / "first-stage-ran"
    bad = (
        "pipeline {\n"
        f"  stage {{ name = 'first' steps {{ sh 'touch {ran}' }} }}\n"
        "  stage {\n    name = 'second'\n    steps {\n"
        "      shh 'make'\n"
        "      dir '/etc' { sh 'true' }\n"
        "    }\n  }\n}\n"
    )
    sha, run = push_and_finish(world, {"README": "x\n", "Ottofile": bad})
    assert (run["status"], run["batches"]) == ("Error", [])
    assert run["rejected"]["reason"] == "config_error"
    lines = run["rejected"]["message"].splitlines()
    assert lines[0].startswith("Ottofile:6:7: unknown step `shh` (did you mean `sh`?)")
    assert lines[1:3] == ["      shh 'make'", "      ^"]
    assert lines[3].startswith("Ottofile:7:7: `dir` directory `/etc` must be relative")
    moves = world.client.get(f"/v1/pipelines/{run['uuid']}/transitions").json()["transitions"]
    assert {t["entity"] for t in moves} == {"pipeline"}  # no batch, context or step moved
    assert moves[-1]["reason"] == "config_error"
    assert world.client.get("/v1/contexts/open").json() == {"contexts": []}
    retry = world.client.post(f"/v1/pipelines/{run['uuid']}/retry")
    assert retry.status_code == 409 and "never ran (config_error)" in retry.text
    wait_for(lambda: world.github.of(sha) == ["pending", "error"], what="pending, then error")
    assert "Ottofile:6:7: unknown step" in world.github.statuses[-1]["description"]
    assert not ran.exists()


def test_a_commit_without_an_ottofile_is_a_visible_error_run(world: World) -> None:
    sha, run = push_and_finish(world, {"README": "x\n"})
    assert run["status"] == "Error"
    wait_for(lambda: world.github.of(sha) == ["pending", "error"], what="pending, then error")
    assert world.github.statuses[-1]["description"] == f"Otto: Error: Ottofile not found at {sha}"


def test_checkout_false_and_an_inline_pipeline(tmp_path: Path) -> None:
    inline = (
        "pipeline {\n  steps {\n"
        f"    sh 'test ! -e README && test ! -e .git && echo bare > {tmp_path}/seen.txt'\n"
        "  }\n}\n"
    )
    extra = "checkout: false\npipeline:\n  inline: |\n" + "".join(
        f"    {line}\n" for line in inline.splitlines()
    )
    with start_world(tmp_path, extra) as world:
        sha = world.repo.commit({"README": "x\n"})  # no Ottofile: the inline one is used
        world.repo.push("main")
        body = push_payload(world.repo.url, FULL_NAME, "refs/heads/main", sha)
        assert deliver(world.client, body, SECRET).status_code == 202
        runs = wait_for(lambda: pipelines(world.client), what="a pipeline")
        run = wait_for(lambda: finished(world.client, runs[0]["uuid"]), what="the run to end")
        assert run["status"] == "Success", run
        assert (tmp_path / "seen.txt").read_text().strip() == "bare"
        wait_for(lambda: world.github.of(sha) == ["pending", "success"], what="two statuses")


def test_a_new_push_supersedes_the_slow_run_of_its_branch(tmp_path: Path) -> None:
    slow = "pipeline {\n  stage {\n    name = 'slow'\n    steps { sh 'sleep 30' }\n  }\n}\n"
    with start_world(tmp_path, extra="supersede: running\n") as world:
        ref = "refs/heads/release/1"
        first = world.repo.commit({"README": "1\n", "Ottofile": slow})
        world.repo.push("release/1")
        assert (
            deliver(
                world.client, push_payload(world.repo.url, FULL_NAME, ref, first), SECRET
            ).status_code
            == 202
        )
        older = wait_for(lambda: pipelines(world.client), what="the first run")[0]["uuid"]
        wait_for(
            lambda: (
                world.client.get(f"/v1/pipelines/{older}").json()["batches"][0]["contexts"][0][
                    "state"
                ]
                == "Running"
            ),
            what="the slow step to run",
        )
        second = world.repo.commit({"README": "2\n", "Ottofile": ottofile(world.out)})
        world.repo.push("release/1")
        assert (
            deliver(
                world.client, push_payload(world.repo.url, FULL_NAME, ref, second), SECRET
            ).status_code
            == 202
        )
        ended = wait_for(lambda: finished(world.client, older), what="the old run to end")
        assert (ended["status"], ended["abort_reason"]) == ("Aborted", "superseded")
        newer = next(r["uuid"] for r in pipelines(world.client) if r["sha"] == second)
        moves = world.client.get(f"/v1/pipelines/{older}/transitions").json()["transitions"]
        pointers = {t["data"].get("superseded_by") for t in moves if t["reason"] == "superseded"}
        assert pointers == {newer}
        assert wait_for(lambda: finished(world.client, newer), what="the new run")["status"] == (
            "Success"
        )
