"""`GET /v1/webhooks/deliveries` is a read like the others: behind `read_token_required`,
and only under a host name the server answers to (the forges' signed hooks beside it
are exempt from both; the list is not)."""

from __future__ import annotations

from pathlib import Path

from serverkit import running_server

TOKEN, READ_TOKEN = "full-token-1", "read-token-1"
LIST = "/v1/webhooks/deliveries"


def test_the_deliveries_list_needs_a_read_token_and_a_known_host(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "otto.yml").write_text("read_token_required: true\n")
    env = {"OTTO_TOKEN": TOKEN, "OTTO_READ_TOKEN": READ_TOKEN, "OTTO_LOCAL_ORCHESTRATOR": "0"}
    with running_server(home, **env) as server, server.client() as client:
        hook = client.post("/v1/webhooks/github", content=b"{}", headers={"X-GitHub-Event": "push"})
        assert hook.status_code == 401 and hook.json()["error"]["code"] == "unsigned"  # no token
        assert client.get(LIST).status_code == 401
        reader = {"Authorization": f"Bearer {READ_TOKEN}"}
        listed = client.get(LIST, headers=reader)
        assert listed.status_code == 200
        assert [d["verdict"] for d in listed.json()["deliveries"]] == ["refused"]
        rebound = client.get(LIST, headers={"Host": "evil.example.com"})  # DNS rebinding
        assert rebound.status_code == 421
        assert client.get(LIST, headers={"Origin": "http://evil.example.com"}).status_code != 200
