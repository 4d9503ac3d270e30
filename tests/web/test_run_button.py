"""The projects page's Run button: a manual run at the ref typed in, through the token
session of a protected server, then the new run's page."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from serverkit import free_port
from webhooks.hookkit import git_daemon, make_repo

from .conftest import Servers
from .dashboardkit import expect

if TYPE_CHECKING:
    from playwright.sync_api import Dialog, Page, Request

OTTOFILE = "pipeline {\n  stage {\n    name = 'build'\n    steps { sh 'true' }\n  }\n}\n"


def test_run_starts_a_run_at_the_ref_given(servers: Servers, tmp_path: Path, page: Page) -> None:
    token = "s3cret-token"
    served = tmp_path / "served"
    with git_daemon(served) as base:
        repo = make_repo(served, base, "acme/app.git", tmp_path)
        repo.commit({"Ottofile": OTTOFILE})
        repo.push("main")
        feature = repo.commit({"README": "feature\n"})
        repo.push("feature")
        home = tmp_path / "home"
        (home / "projects.d").mkdir(parents=True)
        (home / "projects.d" / "app.yml").write_text(
            f"source:\n  url: {repo.url}\nsecret_env: APP_HOOK_SECRET\n"
        )
        server = servers.start(home, free_port(), OTTO_TOKEN=token, APP_HOOK_SECRET="s3cret")
        otto = servers.api(server, token=token)

        dialogs: list[str] = []

        def answer(dialog: Dialog) -> None:
            dialogs.append(dialog.type)
            dialog.accept(token)

        page.on("dialog", answer)
        posts: list[Request] = []
        page.on("request", lambda r: posts.append(r) if r.method == "POST" else None)
        page.goto(f"{otto.url}/projects")
        form = page.get_by_role("form", name="Run app")
        ref = form.get_by_label("Ref")
        expect(ref).to_have_value("main")  # the default branch
        ref.fill("feature")
        form.get_by_role("button", name="Run").click()

        expect(page).to_have_url(re.compile(r"/pipelines/[0-9a-f-]{36}$"))
        uuid = page.url.rsplit("/", 1)[1]
        run = otto.wait_complete(uuid)
    assert (run["status"], run["sha"], run["ref"]) == ("Success", feature, "refs/heads/feature")
    assert (run["event"], run["trigger"]) == ("manual", "manual by dashboard")
    assert dialogs == ["prompt"]  # the token, asked once, exchanged for a session
    runs_url, login_url = f"{otto.url}/v1/projects/app/runs", f"{otto.url}/login"
    assert [r.url for r in posts] == [runs_url, login_url, runs_url]
    assert posts[-1].post_data_json == {"ref": "feature", "by": "dashboard"}
    assert "x-otto-csrf" in posts[-1].headers and "authorization" not in posts[-1].headers
