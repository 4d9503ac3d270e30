"""Outbound webhooks and the delivery log on a real `otto server`: a push to a repository
served by `git daemon`, a subscriber and a fake GitHub over HTTP, restarts included."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
from hookkit import deliver, fake_github, fake_subscriber, git_daemon, make_repo, push_payload

from serverkit import free_port, running_server, start_server, stop_server
from serverkit import wait_for as wait

SECRET, HOOK_SECRET, TOKEN = "push-secret", "subscriber-secret", "ghp_deliveries"
OTTOFILE = "pipeline {\n  stage {\n    name = 'build'\n    steps { sh 'true' }\n  }\n}\n"
ENV = {
    "APP_SECRET": SECRET,
    "APP_HOOK_SECRET": HOOK_SECRET,
    "APP_TOKEN": TOKEN,
    "OTTO_DELIVERY_BACKOFF": ",".join(["0.2"] * 20),
}


def write_project(home: Path, repo_url: str, extra: str) -> None:
    (home / "projects.d").mkdir(parents=True, exist_ok=True)
    (home / "projects.d" / "app.yml").write_text(
        f"source:\n  url: {repo_url}\nsecret_env: APP_SECRET\n" + extra
    )


def deliveries(client: httpx.Client, **query: Any) -> list[dict[str, Any]]:
    answer = client.get("/v1/deliveries", params=query)
    assert answer.status_code == 200, answer.text
    return answer.json()["deliveries"]


def test_subscribers_hear_of_runs_and_the_log_replays(tmp_path: Path) -> None:
    served = tmp_path / "served"
    with git_daemon(served) as base, fake_subscriber(HOOK_SECRET) as hook:
        repo = make_repo(served, base, "acme/app.git", tmp_path)
        home = tmp_path / "home"
        write_project(
            home,
            repo.url,
            f"webhooks:\n  - url: {hook.url}\n    secret_env: APP_HOOK_SECRET\n"
            "    entities: [pipeline]\n",
        )
        with running_server(home, **ENV) as server, server.client() as client:
            sha = repo.commit({"Ottofile": OTTOFILE})
            repo.push("main")
            body = push_payload(repo.url, "acme/app", "refs/heads/main", sha)
            assert deliver(client, body, SECRET).status_code == 202
            wait(lambda: len(hook.received) == 3, what="three pipeline transitions")
            ended = ("Complete", "Success")
            assert [t[1:] for t in hook.transitions()] == [
                ("Pending", None),
                ("Running", None),
                ended,
            ]
            assert hook.problems == []
            run = hook.received[0]["body"]["pipeline"]
            assert (run["sha"], run["ref"], run["repository"]) == (
                sha,
                "refs/heads/main",
                "acme/app",
            )

            def delivered() -> list[dict[str, Any]]:
                found = [d for d in deliveries(client) if d["state"] == "delivered"]
                return found if len(found) == 3 else []

            log = wait(delivered, 10, what="three delivered")
            newest_first = ["pipeline.Complete", "pipeline.Running", "pipeline.Pending"]
            assert [d["event"] for d in log] == newest_first
            assert {d["id"] for d in log} == set(hook.deliveries())
            assert log[0]["payload"]["transition"]["status"] == "Success"
            assert (log[0]["attempts"], log[0]["last_code"], log[0]["kind"]) == (1, 204, "webhook")
            assert deliveries(client, kind="status") == []
            page = client.get("/v1/deliveries", params={"limit": 2}).json()
            more = deliveries(client, limit=2, cursor=page["next_cursor"])
            assert [d["id"] for d in page["deliveries"] + more] == [d["id"] for d in log]
            assert client.get(f"/v1/deliveries/{log[2]['id']}").json() == log[2]

            replay = client.post(f"/v1/deliveries/{log[0]['id']}/replay")
            assert replay.status_code == 202 and replay.json()["replay_of"] == log[0]["id"]
            wait(lambda: len(hook.received) == 4, what="the replay")
            assert hook.deliveries()[-1] == replay.json()["id"] != log[0]["id"]
            assert hook.received[-1]["body"] == hook.received[2]["body"]

            refused = [
                ({"state": "lost"}, "state"),
                ({"limit": "0"}, "limit"),
                ({"colour": "red"}, "colour"),
                ({"cursor": "xyz"}, "cursor"),
                ({"limit": "many"}, "limit"),
                ({"kind": "email"}, "kind"),
            ]
            for query, field in refused:
                bad = client.get("/v1/deliveries", params=query)
                assert bad.status_code == 400 and bad.json()["error"]["field"] == field, bad.text
            for missing in (client.get("/v1/deliveries/nope"),
                            client.post("/v1/deliveries/nope/replay")):  # fmt: skip
                assert missing.status_code == 404 and "nope" in missing.json()["error"]["message"]
            paths = client.get("/openapi.json").json()["paths"]
            assert "get" in paths["/v1/deliveries"]
            assert "post" in paths["/v1/deliveries/{id}/replay"]


def test_statuses_due_when_the_server_died_are_sent_after_its_restart(tmp_path: Path) -> None:
    served = tmp_path / "served"
    with git_daemon(served) as base, fake_github(TOKEN) as github:
        repo = make_repo(served, base, "acme/app.git", tmp_path)
        home = tmp_path / "home"
        home.mkdir()
        write_project(
            home, repo.url, f"statuses:\n  api_url: {github.url}\n  token_env: APP_TOKEN\n"
        )
        github.down = True
        server = start_server(home, free_port(), **ENV)
        try:
            sha = repo.commit({"Ottofile": OTTOFILE})
            repo.push("main")
            with server.client() as client:
                body = push_payload(repo.url, "acme/app", "refs/heads/main", sha)
                assert deliver(client, body, SECRET).status_code == 202
                wait(lambda: [r for r in client.get("/v1/pipelines").json()["pipelines"]
                              if r["state"] == "Complete"], what="the run to end")  # fmt: skip
                wait(lambda: github.refused >= 2, what="GitHub to refuse the status")
        finally:
            stop_server(server, signal.SIGKILL)  # no goodbye
        assert github.statuses == []
        github.down = False
        again = start_server(home, free_port(), **ENV)
        try:
            wait(lambda: len(github.statuses) == 2, what="both statuses")
            with again.client() as client:
                log = deliveries(client, kind="status")
            assert [d["event"] for d in log] == ["status.success", "status.pending"]
            assert [d["state"] for d in log] == ["delivered", "delivered"]
            assert log[1]["attempts"] >= 2  # refused before, sent after the restart
        finally:
            stop_server(again)
    assert github.of(sha) == ["pending", "success"]
    assert github.problems == []
