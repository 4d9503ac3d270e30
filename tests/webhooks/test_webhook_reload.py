"""`projects.d` is read again without a restart: when a file changes, and on SIGHUP."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
from hookkit import deliver, push_payload

from serverkit import Server, running_server, wait_for

URL = "https://github.com/acme/app.git"
SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
GOOD = f"source:\n  url: {URL}\nsecret_env: APP_SECRET\n"
TYPO = f"source:\n  url: {URL}\nsecert_env: APP_SECRET\n"


def names(client: httpx.Client) -> list[str]:
    return [p["name"] for p in client.get("/v1/projects").json()["projects"]]


def titles(client: httpx.Client) -> list[str]:
    return [p["title"] for p in client.get("/v1/projects").json()["projects"]]


def server_log(server: Server) -> str:
    return (server.home.parent / f"server-{server.url.rsplit(':', 1)[1]}.log").read_text()


def test_a_changed_file_is_reloaded_and_a_broken_one_keeps_the_last_good_version(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    projects = home / "projects.d"
    projects.mkdir(parents=True)
    (projects / "app.yml").write_text(TYPO)
    env = {"APP_SECRET": "s3cret", "OTTO_LOCAL_ORCHESTRATOR": "0"}
    with running_server(home, **env) as server, server.client() as client:
        assert names(client) == []
        push = push_payload(URL, "acme/app", "refs/heads/feature", SHA)
        assert deliver(client, push, "s3cret", "issues").status_code == 401  # no such project

        (projects / "app.yml").write_text(GOOD)  # fixed: no restart
        wait_for(lambda: names(client) == ["app"], 10, "the fixed project")
        assert deliver(client, push, "s3cret", "issues").status_code == 202  # known, ignored

        (projects / "app.yml").write_text("title: Half-saved\n" + TYPO)  # broken again
        wait_for(lambda: server_log(server).count("project file rejected") == 2, 10, "rejected")
        assert names(client) == ["app"] and titles(client) == [""]  # the good version stays

        (projects / "other.yml").write_text(
            "title: Other\nsource: {url: 'https://github.com/acme/other.git'}\nsecret_env: O\n"
        )
        wait_for(lambda: names(client) == ["app", "other"], 10, "the new project")
        (projects / "other.yml").unlink()
        wait_for(lambda: names(client) == ["app"], 10, "the removed project")
    log = server_log(server)
    assert "unknown key 'secert_env' (did you mean 'secret_env'?)" in log
    assert "project file rejected" in log and 'kept="the version loaded before"' in log
    assert "project loaded name=other" in log and "project removed name=other" in log


def test_sighup_reloads_even_what_polling_cannot_see(tmp_path: Path) -> None:
    home = tmp_path / "home"
    projects = home / "projects.d"
    projects.mkdir(parents=True)
    app = projects / "app.yml"
    app.write_text("title: Old\n" + GOOD)
    with running_server(home, OTTO_LOCAL_ORCHESTRATOR="0") as server, server.client() as client:
        assert titles(client) == ["Old"]
        before = app.stat()
        with app.open("r+") as file:  # the same size, inode and mtime: no poll notices it
            file.write("title: New\n")
        os.utime(app, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert app.stat().st_size == before.st_size
        time.sleep(2.5)  # more than two polls of projects.d
        assert titles(client) == ["Old"]
        server.process.send_signal(signal.SIGHUP)
        wait_for(lambda: titles(client) == ["New"], 10, "the reload")
        assert server.process.poll() is None  # SIGHUP reloads; it does not stop the server
