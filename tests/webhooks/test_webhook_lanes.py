"""The push worker serves each repository in a lane of its own: a repository that hangs
or does not answer holds up only its own pushes (retried with back-off, then a visible
`config_error` run), and a commit the repository does not have is a `config_error` run
at once. Real repositories served by `git daemon`, real TCP servers, a real PSM."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from hookkit import deliver, git_daemon, make_repo, push_payload, silent_server

from otto.model import Pipeline
from otto.psm import CONFIG_ERROR, PipelineStateMachine
from otto.webhooks.inbox import CREATED, QUEUED, Inbox, Push, Received, RunInfo
from otto.webhooks.mirror import Mirrors
from otto.webhooks.projects import Project
from otto.webhooks.statuses import status_entries
from otto.webhooks.worker import PushWorker
from serverkit import free_port, running_server, wait_for

OTTOFILE = "pipeline {\n  steps { sh 'true' }\n}\n"
SECRET, TOKEN = "lanes-secret", "hunter2-token"
UNKNOWN_SHA = "0123456789abcdef0123456789abcdef01234567"


def project(name: str, url: str) -> Project:
    statuses = {"api_url": "http://127.0.0.1:9", "token_env": "GH_TOKEN"}
    return Project.model_validate(
        {"name": name, "source": {"url": url}, "secret_env": "S", "statuses": statuses}
    )


def queue_push(inbox: Inbox, to: Project, sha: str) -> str:
    """A push of `sha` to main, queued as the webhook route queues one: its delivery id."""
    delivery = str(uuid.uuid4())
    push = Push(delivery, to.name, "refs/heads/main", sha, to.source.url, f"acme/{to.name}")
    inbox.record(Received("github", "push", delivery, QUEUED, 202, project=to.name), push)
    return delivery


def outcome(inbox: Inbox, delivery: str) -> Received | None:
    """What became of a queued delivery, once the worker is done with it."""
    found = [r for r in inbox.received(100) if r.delivery == delivery]
    return found[0] if found and found[0].verdict != QUEUED else None


def test_a_repository_that_hangs_or_is_down_holds_up_only_its_own_pushes(
    psm: PipelineStateMachine, tmp_path: Path
) -> None:
    served = tmp_path / "served"
    with git_daemon(served) as base, silent_server() as silent:
        repo = make_repo(served, base, "acme/app.git", tmp_path)
        first = repo.commit({"Ottofile": OTTOFILE}, "first")
        second = repo.commit({"Ottofile": OTTOFILE, "more": "2"}, "second")
        repo.push("main")
        hang = project("hang", f"git://{silent.address}/acme/hang.git")
        # Nothing listens there; the URL carries a credential and a server path.
        down = project("down", f"http://otto:{TOKEN}@127.0.0.1:{free_port()}/srv/git/down.git")
        app = project("app", repo.url)
        projects = {p.name: p for p in (hang, down, app)}
        inbox = Inbox(psm.store)
        cut = 5.0  # seconds a fetch may take: the hanging one is cut after it
        mirrors = Mirrors(tmp_path / "mirrors", timeout=cut)
        worker = PushWorker(psm, inbox, mirrors, projects.get, backoff=(0.2, 0.2))
        hung, refused = queue_push(inbox, hang, first), queue_push(inbox, down, first)
        builds = [queue_push(inbox, app, sha) for sha in (first, second)]
        started = time.monotonic()
        worker.start()
        try:
            wait_for(lambda: all(outcome(inbox, d) for d in builds), what="the app's runs")
            took = time.monotonic() - started
            assert silent.held, "the hanging repository was asked"
            assert outcome(inbox, hung) is None  # the unreachable one may be done: it fails fast
            print(f"\nthe other repository's 2 pushes took {took:.2f} s beside a hanging one")
            assert took < cut  # one after the other, they would wait for 3 tries of `cut`
            runs = [outcome(inbox, d) for d in builds]
            assert [(r.verdict, r.reason) for r in runs if r] == [(CREATED, "")] * 2
            created = [psm.get(r.pipeline)["created_at"] for r in runs if r and r.pipeline]
            assert created == sorted(created), "one repository's pushes run in order"

            gone = wait_for(lambda: outcome(inbox, refused), what="the unreachable push")
            assert time.monotonic() - started >= 0.4  # both delays of the back-off
            assert gone.reason.startswith(f"config_error: cannot fetch commit {first}:")
            assert "http://127.0.0.1:" in gone.reason and TOKEN not in gone.reason
            timed_out = wait_for(lambda: outcome(inbox, hung), 60, "the hanging push")
            assert time.monotonic() - started >= 3 * cut  # three tries, each cut
            assert "no answer" in timed_out.reason
            assert f"timed out after {cut:g} s" in timed_out.reason
        finally:
            worker.stop()
    status = status_of(psm, inbox, down, gone)
    assert status == f"Otto: Error: cannot fetch commit {first}: the repository is unreachable"


def status_of(psm: PipelineStateMachine, inbox: Inbox, of: Project, received: Received) -> str:
    """The description of the commit status the run's last transition posts."""
    assert received.pipeline
    run = inbox.run(received.pipeline)
    assert run is not None
    ended = psm.events.after(0, pipeline=received.pipeline)[-1]
    entries = status_entries(ended, run, of, "http://otto.example")
    return str(json.loads(entries[-1].body)["description"])


def test_a_status_description_says_what_failed_without_urls_paths_or_git_output(
    psm: PipelineStateMachine,
) -> None:
    inbox, of = Inbox(psm.store), project("app", "git://127.0.0.1/app.git")
    error = (
        f"cannot read https://otto:{TOKEN}@git.example.com/acme/app.git into"
        " /var/lib/otto/mirrors/app.git (git@git.example.com:acme/app.git)\n"
        "fatal: unable to access '/var/lib/otto/mirrors/app.git': Permission denied"
    )
    for message, shown in (
        (error, "Otto: Error: cannot read <url> into <path> (<url>)"),
        ("Ottofile:4:5: expected '}'\n  stage {\n    ^", "Otto: Error: Ottofile:4:5: expected '}'"),
        ("x" * 300, "Otto: Error: " + "x" * 126 + "…"),
    ):
        sha = uuid.uuid4().hex[:40].ljust(40, "0")
        created = psm.create(
            Pipeline(), repo=of.source.url, sha=sha, rejected=(CONFIG_ERROR, message)
        )
        inbox.add_run(RunInfo(created.uuid, "app", "acme/app", of.source.url, "", sha, True))
        rejected = Received("github", "push", sha, CREATED, 202, pipeline=created.uuid)
        description = status_of(psm, inbox, of, rejected)
        assert description == shown and len(description) <= 140
        assert psm.get(created.uuid)["rejected"]["message"] == message  # all of it, kept


def pipeline_of(client: httpx.Client, sha: str) -> dict[str, Any] | None:
    found = [r for r in client.get("/v1/pipelines").json()["pipelines"] if r["sha"] == sha]
    return found[0] if found else None


def test_a_hanging_repository_does_not_delay_another_projects_push(tmp_path: Path) -> None:
    served, home = tmp_path / "served", tmp_path / "home"
    with git_daemon(served) as base, silent_server() as silent:
        repo = make_repo(served, base, "acme/app.git", tmp_path)
        hang_url = f"git://{silent.address}/acme/hang.git"
        (home / "projects.d").mkdir(parents=True)
        for name, url in (("app", repo.url), ("hang", hang_url)):
            (home / "projects.d" / f"{name}.yml").write_text(
                f"source: {{url: '{url}'}}\nsecret_env: HOOK_SECRET\n"
            )
        with running_server(home, HOOK_SECRET=SECRET) as server, server.client() as client:

            def run_of_a_push(files: dict[str, str]) -> float:
                """Seconds from the delivery of a new commit of `app` to its run."""
                sha = repo.commit(files)
                repo.push("main")
                body = push_payload(repo.url, "acme/app", "refs/heads/main", sha)
                delivered = time.monotonic()
                assert deliver(client, body, SECRET).status_code == 202
                wait_for(lambda: pipeline_of(client, sha), what="the app's run")
                return time.monotonic() - delivered

            alone = run_of_a_push({"Ottofile": OTTOFILE})
            hanging = push_payload(hang_url, "acme/hang", "refs/heads/main", "a" * 40)
            assert deliver(client, hanging, SECRET, delivery="hang-1").status_code == 202
            wait_for(lambda: silent.held, what="the hanging fetch")
            beside = run_of_a_push({"Ottofile": OTTOFILE, "more": "1"})
            print(f"\napp's push to its run: {alone:.2f} s alone, {beside:.2f} s beside a hang")
            assert beside < alone + 1.0
            listed = client.get("/v1/webhooks/deliveries").json()["deliveries"]
            assert [d["verdict"] for d in listed if d["delivery"] == "hang-1"] == [QUEUED]

            unknown = push_payload(repo.url, "acme/app", "refs/heads/main", UNKNOWN_SHA)
            delivered = time.monotonic()
            assert deliver(client, unknown, SECRET).status_code == 202
            run = wait_for(lambda: pipeline_of(client, UNKNOWN_SHA), what="the unknown commit")
            took = time.monotonic() - delivered
            print(f"an unknown commit became a config_error run in {took:.2f} s")
            assert took < 1.0 + alone  # no retry: the back-off's first delay is 1 s
            shown = client.get(f"/v1/pipelines/{run['uuid']}").json()
            assert (shown["state"], shown["status"]) == ("Complete", "Error")
            rejected = shown["rejected"]
            assert rejected["reason"] == "config_error"
            assert rejected["message"].startswith(f"commit {UNKNOWN_SHA} not found in the repo")
            assert "not our ref" in rejected["message"]  # git's words, for the server's users
            silent.hang_up()  # the hanging fetch ends: the server need not wait for it
