"""The dashboard's pages over real HTTP, without a browser: what each shows, its parts
(`?part=`), filters and pages, the no-JavaScript log view, vendored assets only.

The browser tests (live updates, clicks) are the other modules here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from e2e.e2ekit import contexts, step_log_key, submit, wait_complete
from serverkit import Server, running_server

PIPELINE = """pipeline {
    stage {
        name = 'Build'
        steps {
            sh 'printf "\\033[31mred\\033[0m <b>tag</b>\\n"'
            sh 'touch x'
            archive artifacts: 'x', name: 'thing'
        }
    }
    parallel {
        stage { name = 'Unit' steps { sh 'true' } }
        stage { name = 'Lint' steps { sh 'exit 1' } }
    }
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home: Path = tmp_path_factory.mktemp("dash") / "home"
    (home / "projects.d").mkdir(parents=True)
    (home / "projects.d" / "app.yml").write_text(
        "title: The App\nsource: {url: 'https://git.example/app.git'}\nsecret_env: APP_SECRET\n"
    )
    with running_server(home) as srv:
        yield srv


@pytest.fixture(scope="module")
def finished(server: Server) -> dict:
    """One finished run: Build (with ANSI output and an artifact), then Unit ∥ Lint (fails)."""
    with server.client() as client:
        uuid = submit(client, PIPELINE)
        return wait_complete(client, uuid)


def rows(html: str) -> list[str]:
    return re.findall(r'<tr id="run-([0-9a-f-]+)"', html)


def test_run_page_shows_the_graph_steps_artifacts_and_every_transition(
    server: Server, finished: dict
) -> None:
    with server.client() as client:
        page = client.get(f"/pipelines/{finished['uuid']}")
        transitions = client.get(f"/v1/pipelines/{finished['uuid']}/transitions").json()
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    # Batches left to right, each with its contexts, states as a word and an icon.
    assert html.index('aria-label="Batch 1, Linear, Success"') < html.index(
        'aria-label="Batch 2, Parallel, Failed"'
    )
    by_name = contexts(finished)
    for name, state in (("Build", "Success"), ("Unit", "Success"), ("Lint", "Failed")):
        box = re.search(
            rf'<article class="context [^"]+" id="ctx-{by_name[name]["uuid"]}"[^>]*>', html
        )
        assert box and f'data-state="{state}"' in box.group(0), name
    assert "✗</span> Failed" in html and "on local" in html
    # Every transition, in order, once.
    seqs = [int(s) for s in re.findall(r'<tr data-seq="(\d+)">', html)]
    assert seqs == [t["seq"] for t in transitions["transitions"]]
    # The artifact, downloadable.
    assert f'href="/v1/objects/{finished["uuid"]}/artifacts/thing' in html
    # The failed run can be retried, not aborted.
    assert "Retry failed contexts" in html and ">Abort<" not in html


def test_parts_render_one_region_and_the_timeline_only_what_is_new(
    server: Server, finished: dict
) -> None:
    uuid = finished["uuid"]
    with server.client() as client:
        graph = client.get(f"/pipelines/{uuid}", params={"part": "graph"}).text
        after = client.get(f"/pipelines/{uuid}", params={"part": "timeline", "after": "5"}).text
        all_seqs = [
            t["seq"] for t in client.get(f"/v1/pipelines/{uuid}/transitions").json()["transitions"]
        ]
    assert graph.startswith('<div id="graph"') and "<html" not in graph
    seqs = [int(s) for s in re.findall(r'<tr data-seq="(\d+)">', after)]
    assert seqs == [s for s in all_seqs if s > 5]


def test_a_step_log_without_javascript(server: Server, finished: dict) -> None:
    build = contexts(finished)["Build"]
    step = build["steps"][0]["uuid"]
    with server.client() as client:
        html = client.get(f"/pipelines/{finished['uuid']}", params={"step": step}).text
        raw = client.get(f"/v1/objects/{step_log_key(finished, build)}").content
    assert b"\x1b[31m" in raw  # the raw log keeps the colours …
    log = re.search(r'<pre id="log-text"[^>]*>(.*?)</pre>', html, re.S)
    assert log is not None
    # … the page shows the text, escaped (the agent's echo of the command first), a
    # numbered line each.
    lines = re.findall(r'<span class="line" id="L(\d+)">.*?</a>(.*?)</span>', log.group(1), re.S)
    assert lines[-1] == (str(len(lines)), "red &lt;b&gt;tag&lt;/b&gt;\n")
    assert 'href="/v1/objects/' + step_log_key(finished, build) + '"' in html


def test_runs_list_filters_and_shows_where_a_run_came_from(server: Server, finished: dict) -> None:
    with server.client() as client:
        other = client.post(
            "/v1/pipelines",
            json={
                "ottofile": "pipeline { stage { steps { sh 'true' } } }",
                "project": "app",
                "ref": "refs/heads/main",
                "sha": "c0ffee" + "0" * 34,
                "trigger": "push by alice",
                "message": "Fix the <frobnicator>",
            },
        ).json()["uuid"]
        wait_complete(client, other)
        everything = client.get("/").text
        failed = client.get("/", params={"status": "Failed"}).text
        app_main = client.get("/", params={"project": "app", "branch": "main"}).text
        projects = client.get("/projects").text
    assert rows(everything)[:2] == [other, finished["uuid"]]  # newest first
    assert finished["uuid"] in rows(failed) and other not in rows(failed)
    assert rows(app_main) == [other]
    assert "push by alice" in app_main and "c0ffee00" in app_main
    assert "Fix the &lt;frobnicator&gt;" in app_main  # escaped, never markup
    # The projects page: each project's latest run per branch.
    assert "The App" in projects and f'href="/pipelines/{other}"' in projects


def test_runs_list_pages(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with running_server(home, OTTO_LOCAL_ORCHESTRATOR="0") as srv, srv.client() as client:
        made = [submit(client, "pipeline { stage { steps { sh 'true' } } }") for _ in range(53)]
        first = client.get("/").text
        older = re.search(r'href="(/\?[^"]*cursor=[^"]+)" rel="next"', first)
        assert older is not None
        second = client.get(older.group(1).replace("&amp;", "&")).text
        running = client.get("/", params={"status": "Running"}).text
    assert rows(first) == made[::-1][:50]
    assert rows(second) == made[::-1][50:]
    assert 'rel="next"' not in second and "« Newest" in second
    assert len(rows(running)) == 50  # nothing runs them: all still Running


def test_unknown_run_is_a_404_page(server: Server) -> None:
    with server.client() as client:
        response = client.get("/pipelines/no-such-run")
    assert response.status_code == 404 and "There is no pipeline no-such-run" in response.text


def test_assets_are_vendored_not_fetched_from_a_cdn(server: Server, finished: dict) -> None:
    with server.client() as client:
        pages = [client.get(p).text for p in ("/", f"/pipelines/{finished['uuid']}", "/auctions")]
        for page in pages:
            for url in re.findall(r'(?:src|href)="([^"]+)"', page):
                assert not url.startswith(("http:", "https:", "//")), url
        for asset in re.findall(r'src="(/static/[^"]+)"', pages[0]):
            assert client.get(asset).status_code == 200
        script = client.get("/static/dashboard.js").text
        assert "./vendor/ansi_up-6.0.6.js" in script
        assert client.get("/static/vendor/ansi_up-6.0.6.js").status_code == 200


def test_auctions_page_shows_the_awards(server: Server, finished: dict) -> None:
    with server.client() as client:
        html = client.get("/auctions").text
    assert "Recent" in html and '<td data-label="Award">local</td>' in html
    lint = contexts(finished)["Lint"]["uuid"]
    assert f'href="/pipelines/{finished["uuid"]}#ctx-{lint}">Lint</a>' in html


def test_pages_read_without_a_token_but_actions_need_one(tmp_path: Path) -> None:
    with running_server(tmp_path / "home", OTTO_TOKEN="s3cret") as srv, srv.client() as client:
        uuid = submit_with_token(client)
        assert client.get(f"/pipelines/{uuid}").status_code == 200
        assert client.post(f"/v1/pipelines/{uuid}/abort").status_code == 401


def submit_with_token(client: httpx.Client) -> str:
    response = client.post(
        "/v1/pipelines",
        json={"ottofile": "pipeline { stage { steps { sh 'true' } } }"},
        headers={"Authorization": "Bearer s3cret"},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["uuid"])
