"""A fork's pull request never gets a credential: its run asking for one ends Error
`credential_denied` before any step runs, while the same request from the repository
itself gets it. A real `otto server`, `git daemon` repositories, signed payloads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from hookkit import Repo, deliver, git, git_daemon, make_repo, pull_request_payload

from serverkit import running_server, wait_for

SECRET = "s3cret-hook"
API_TOKEN = "otto-api-token"  # credentials and forks' requests need a server with a token
ASKING = (
    "pipeline {\n  stage {\n    name = 'deploy'\n    credentials = ['deploy-key']\n"
    "    steps { sh 'test -s \"$OTTO_CREDENTIALS/deploy-key\"' }\n  }\n}\n"
)


def asking_app(served: Path, base: str, tmp_path: Path) -> tuple[Repo, str, Path]:
    """acme/app, whose Ottofile asks for a credential, with pull requests #5 and #6 at its
    head, and its project file in a server home: (the repository, its head, the home)."""
    app = make_repo(served, base, "acme/app.git", tmp_path)
    app.commit({"Ottofile": ASKING}, "first")
    app.push("main")
    for number in (5, 6):
        git("push", "-q", "origin", f"HEAD:refs/pull/{number}/head", cwd=app.work)
    home = tmp_path / "home"
    (home / "projects.d").mkdir(parents=True)
    (home / "projects.d" / "app.yml").write_text(f"source:\n  url: {app.url}\nsecret_env: HOOK\n")
    return app, git("rev-parse", "HEAD", cwd=app.work), home


def test_a_forks_pull_request_is_denied_its_credentials(tmp_path: Path) -> None:
    served = tmp_path / "served"
    with git_daemon(served) as base:
        app, sha, home = asking_app(served, base, tmp_path)
        with (
            running_server(home, HOOK=SECRET, OTTO_TOKEN=API_TOKEN) as server,
            server.client(API_TOKEN) as client,
        ):
            subprocess.run(
                [sys.executable, "-m", "otto.cli", "credentials", "set", "deploy-key",
                 "--project", "app", "--server", server.url, "--token", API_TOKEN],
                input="key-material-123", text=True, check=True, timeout=60,
            )  # fmt: skip
            for number, head in ((5, "mallory/app"), (6, "acme/app")):
                body = pull_request_payload(app.url, "acme/app", number, "opened", sha, "f",
                                            head_full_name=head)  # fmt: skip
                assert deliver(client, body, SECRET, event="pull_request").status_code == 202

            def both() -> list[dict[str, Any]] | None:
                listed = client.get("/v1/pipelines").json()["pipelines"]
                found = [client.get(f"/v1/pipelines/{r['uuid']}").json() for r in listed]
                done = len(found) == 2 and all(r["state"] == "Complete" for r in found)
                return found if done else None

            by_ref = {r["ref"]: r for r in wait_for(both, what="both runs to end")}
    fork, trusted = by_ref["refs/pull/5/head"], by_ref["refs/pull/6/head"]
    assert trusted["status"] == "Success", trusted
    assert fork["trigger_details"]["fork"] is True
    context = fork["batches"][0]["contexts"][0]
    assert (fork["status"], context["status"]) == ("Error", "Error")
    assert context["reason"] == "credential_denied: a fork's pull request gets no credentials"
    assert context["steps"][0]["state"] == "NotRun"


def test_a_server_without_a_token_keeps_no_credentials_and_runs_no_fork(tmp_path: Path) -> None:
    """Without an API token every local process, a step included, may use the API: such a
    server refuses credentials (set or granted) and never runs a fork's pull request."""
    served = tmp_path / "served"
    with git_daemon(served) as base:
        app, sha, home = asking_app(served, base, tmp_path)
        with running_server(home, HOOK=SECRET) as server, server.client() as client:
            refused = client.put("/v1/credentials/deploy-key", json={"value": "key"})
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "token_required"
            assert client.get("/v1/credentials").status_code == 403
            fork = pull_request_payload(app.url, "acme/app", 5, "opened", sha, "f",
                                        head_full_name="mallory/app")  # fmt: skip
            ignored = deliver(client, fork, SECRET, event="pull_request")
            assert ignored.status_code == 202 and ignored.json()["accepted"] is False
            assert "API token" in ignored.json()["ignored"]
            own = pull_request_payload(app.url, "acme/app", 6, "opened", sha, "f",
                                       head_full_name="acme/app")  # fmt: skip
            assert deliver(client, own, SECRET, event="pull_request").status_code == 202

            def ended() -> list[dict[str, Any]] | None:
                listed = client.get("/v1/pipelines").json()["pipelines"]
                found = [client.get(f"/v1/pipelines/{r['uuid']}").json() for r in listed]
                return found if found and all(r["state"] == "Complete" for r in found) else None

            (run,) = wait_for(ended, what="the run to end")
    assert run["ref"] == "refs/pull/6/head"  # the fork's request made no run
    context = run["batches"][0]["contexts"][0]
    assert context["status"] == "Error"
    assert context["reason"] == (
        "credential_denied: this server keeps no credentials (it has no API token)"
    )
