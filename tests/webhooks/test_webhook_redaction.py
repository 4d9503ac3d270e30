"""Credentials in URLs are never shown: not by `GET /v1/projects`, the
`/projects` page, a run's `repo` in the API and on the pages, nor in the server's log."""

from __future__ import annotations

from pathlib import Path

from serverkit import running_server

SECRET = "s3cret-Pa55"
URL = f"https://alice:{SECRET}@git.example.com/team/app.git"
SHOWN = "https://***@git.example.com/team/app.git"
PROJECT = f"""
title: App
source:
  url: {URL}
secret_env: APP_WEBHOOK_SECRET
statuses:
  token_env: APP_GITHUB_TOKEN
  api_url: https://bot:{SECRET}@api.example.com
webhooks:
  - url: https://hook:{SECRET}@chat.example.com/otto
    secret_env: APP_OUT_SECRET
"""


def test_no_read_and_no_log_line_shows_credentials(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "projects.d").mkdir(parents=True)
    (home / "projects.d" / "app.yml").write_text(PROJECT)
    # A second project with the same URL is refused, and the server logs why, URL and all.
    (home / "projects.d" / "copy.yml").write_text(PROJECT)
    with running_server(home, OTTO_LOCAL_ORCHESTRATOR="0") as server, server.client() as c:
        projects = c.get("/v1/projects")
        assert SECRET not in projects.text
        app = projects.json()["projects"][0]
        assert app["source"]["url"] == SHOWN
        assert app["statuses"]["api_url"] == "https://***@api.example.com"
        assert app["webhooks"][0]["url"] == "https://***@chat.example.com/otto"

        page = c.get("/projects")
        assert page.status_code == 200 and SHOWN in page.text and SECRET not in page.text

        created = c.post(
            "/v1/pipelines",
            json={"ottofile": "pipeline { steps { sh 'true' } }", "repo": URL, "sha": "a" * 40},
        )
        uuid = created.json()["uuid"]
        for path in ("/v1/pipelines", f"/v1/pipelines/{uuid}", f"/v1/pipelines/{uuid}/transitions",
                     "/", f"/pipelines/{uuid}"):  # fmt: skip
            answer = c.get(path, params={"after": 0} if path == "/v1/events" else None)
            assert answer.status_code == 200, path
            assert SECRET not in answer.text, path
        assert c.get(f"/v1/pipelines/{uuid}").json()["repo"] == SHOWN
        assert SECRET not in c.get("/v1/events", params={"after": 0}).text
        log = (home.parent / f"server-{server.url.rsplit(':', 1)[1]}.log").read_text()
    assert "another project already has https://***@git.example.com" in log
    assert SECRET not in log
