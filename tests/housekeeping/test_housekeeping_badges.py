"""`GET /v1/projects/{name}/badge.svg`: the latest complete run's status on a branch, as an
SVG badge, cacheable for a minute, open to read unless reads need a token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from housekeepingkit import FAILING, QUICK, create, gated, run, write_project

from otto.housekeeping.badge import badge_svg
from serverkit import UNSANDBOXED, Server, running_server, wait_for

SECRET = {"HOUSEKEEPING_SECRET": "a-webhook-secret-for-tests"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    home = tmp_path / "home"
    write_project(home, "app")
    with running_server(home, **UNSANDBOXED, **SECRET) as srv:
        yield srv


def words(svg: str) -> list[str]:
    return re.findall(r"<text[^>]*>([^<]*)</text>", svg)


def badge(client: httpx.Client, **params: str) -> httpx.Response:
    answer = client.get("/v1/projects/app/badge.svg", params=params)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("image/svg+xml")
    assert answer.headers["cache-control"] == "max-age=60"
    return answer


def test_badges_say_the_latest_complete_runs_status(server: Server, tmp_path: Path) -> None:
    with server.client() as client:
        assert words(badge(client, branch="main").text) == ["build", "unknown"]
        run(client, FAILING, project="app", ref="refs/heads/main")
        failing = badge(client, branch="main").text
        assert words(failing) == ["build", "failing"] and "#e05d44" in failing
        run(client, QUICK, project="app", ref="refs/heads/main")
        passing = badge(client, branch="main").text
        assert words(passing) == ["build", "passing"] and "#4c1" in passing
        assert words(badge(client, branch="refs/heads/main").text)[1] == "passing"
        run(client, FAILING, project="app", ref="refs/heads/dev")
        assert words(badge(client, branch="dev").text)[1] == "failing"
        assert words(badge(client, branch="nowhere").text)[1] == "unknown"
        assert words(badge(client).text)[1] == "failing"  # any branch: the newest

        gate = tmp_path / "gate"
        running = create(client, gated(gate), project="app", ref="refs/heads/main")
        assert words(badge(client, branch="main").text)[1] == "passing"  # complete runs only
        gate.touch()
        wait_for(lambda: client.get(f"/v1/pipelines/{running}").json()["state"] == "Complete")

        unknown = client.get("/v1/projects/nope/badge.svg")
        assert unknown.status_code == 404 and unknown.json()["error"]["field"] == "name"
        bad = client.get("/v1/projects/app/badge.svg", params={"branch": "a\x01b"})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "branch"


def test_badge_text_is_escaped() -> None:
    svg = badge_svg("<b>&", "Success")
    assert "<b>" not in svg and "&lt;b&gt;&amp;" in svg


def test_a_badge_needs_a_token_only_when_reads_do(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_project(home, "app")
    with running_server(home, **SECRET, OTTO_TOKEN="the-api-token") as server:
        assert httpx.get(f"{server.url}/v1/projects/app/badge.svg").status_code == 200
    env = {"OTTO_TOKEN": "the-api-token", "OTTO_READ_TOKEN_REQUIRED": "true"}
    with running_server(home, **SECRET, **env) as server:
        url = f"{server.url}/v1/projects/app/badge.svg"
        assert httpx.get(url).status_code == 401
        authorised = httpx.get(url, headers={"Authorization": "Bearer the-api-token"})
        assert authorised.status_code == 200 and words(authorised.text)[1] == "unknown"
