"""A fork's pull request never gets a credential: its run asking for one ends Error
`credential_denied` before any step runs, while the same request from the repository
itself gets it. A real `otto server`, `git daemon` repositories, signed payloads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from hookkit import deliver, git, git_daemon, make_repo, pull_request_payload

from serverkit import running_server, wait_for

SECRET = "s3cret-hook"
ASKING = (
    "pipeline {\n  stage {\n    name = 'deploy'\n    credentials = ['deploy-key']\n"
    "    steps { sh 'test -s \"$OTTO_CREDENTIALS/deploy-key\"' }\n  }\n}\n"
)


def test_a_forks_pull_request_is_denied_its_credentials(tmp_path: Path) -> None:
    served = tmp_path / "served"
    with git_daemon(served) as base:
        app = make_repo(served, base, "acme/app.git", tmp_path)
        app.commit({"Ottofile": ASKING}, "first")
        app.push("main")
        git("push", "-q", "origin", "HEAD:refs/pull/5/head", cwd=app.work)
        git("push", "-q", "origin", "HEAD:refs/pull/6/head", cwd=app.work)
        sha = git("rev-parse", "HEAD", cwd=app.work)
        home = tmp_path / "home"
        (home / "projects.d").mkdir(parents=True)
        (home / "projects.d" / "app.yml").write_text(
            f"source:\n  url: {app.url}\nsecret_env: HOOK\n"
        )
        with running_server(home, HOOK=SECRET) as server, server.client() as client:
            subprocess.run(
                [sys.executable, "-m", "otto.cli", "credentials", "set", "deploy-key",
                 "--project", "app", "--server", server.url],
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
