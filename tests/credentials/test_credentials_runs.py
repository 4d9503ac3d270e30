"""Credentials end to end: a real `otto server` (with an API token), the real CLI, real
sandboxed runs. A stage that asks for a credential reads it from its file (and over the
control socket) and publishes with it to a local HTTP endpoint, while its log shows only
the mask; a stage that did not ask finds no file and is refused by the socket; the
database holds no value; the key file is 0600; a rotated key keeps values readable."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.e2ekit import contexts, object_bytes, step_log_key, wait_complete
from isolationkit import TEST_IMAGE, need_podman
from serverkit import Server, orchestrator, running_server

TOKEN = "t0ken-for-credentials"
SECRET = "npm_Zq8#p/9+&tok=én"  # characters that URL, JSON and base64 forms all change
PROJECT_SECRET = "acme-only-Xy7Qw2"
MASK = "****"


@dataclass
class Endpoint:
    """A tiny HTTP server: what the steps publish (the request bodies)."""

    url: str
    bodies: list[bytes] = field(default_factory=list)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Endpoint(f"http://127.0.0.1:{server.server_address[1]}/publish", received)
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("credentials") / "home"
    with running_server(home, OTTO_TOKEN=TOKEN, OTTO_CONCURRENCY="4") as srv:
        otto("credentials", "set", "npm-token", server=srv, stdin=SECRET + "\n")
        otto("credentials", "set", "npm-token", "--project", "acme", server=srv,
             stdin=PROJECT_SECRET)  # fmt: skip
        yield srv


def otto(*args: str, server: Server, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OTTO_SERVER": server.url, "OTTO_TOKEN": TOKEN}
    done = subprocess.run(
        [sys.executable, "-m", "otto.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done


def client(server: Server) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, timeout=10, headers={"Authorization": f"Bearer {TOKEN}"}
    )


def run(c: httpx.Client, ottofile: str, project: str | None = None) -> dict[str, Any]:
    body = {"ottofile": ottofile, **({"project": project} if project else {})}
    answer = c.post("/v1/pipelines", json=body)
    assert answer.status_code == 201, answer.text
    return wait_complete(c, answer.json()["uuid"], 60)


def log_of(c: httpx.Client, pipeline: dict[str, Any], name: str) -> str:
    context = contexts(pipeline)[name]
    data = object_bytes(c, step_log_key(pipeline, context))
    assert data is not None
    return data.decode()


# The control socket's RetrieveCredential, by curl: the answer's body on stdout.
RETRIEVE = (
    'curl -s --unix-socket "$OTTO_CONTROL_SOCKET" '
    '-H "Authorization: Bearer $OTTO_CONTROL_TOKEN" '
    '-d \'{"type": "RetrieveCredential", "name": "npm-token"}\' http://agent/v1/control'
)
FILE = '"$OTTO_CREDENTIALS/npm-token"'
PY = "/usr/bin/python3 -c"
URL_ENCODED = (
    """'import sys, urllib.parse as u; print(u.quote(open(sys.argv[1]).read(), safe=""))'"""
)
JSON_ESCAPED = "'import sys, json; print(json.dumps(open(sys.argv[1]).read()))'"
VALUE_OF = """'import json, sys; print(json.load(sys.stdin)["value"])'"""


def stage(name: str, script: str, credentials: str = "") -> str:
    """A stage of one `sh` step running `script` (quotes doubled, as an Ottofile's are)."""
    asks = f"    credentials = {credentials}\n" if credentials else ""
    quoted = "set -e\n" + script.replace("'", "''")
    return f"  stage {{\n    name = '{name}'\n{asks}    steps {{ sh '{quoted}' }}\n  }}\n"


def publishing(endpoint: Endpoint) -> str:
    """A stage that publishes with its credential; a later one that did not ask for it."""
    publish = f"""
test "$(stat -c %a {FILE})" = 600
touch "$OTTO_CREDENTIALS/other" 2>/dev/null && exit 1
env | grep -q '^OTTO_CREDENTIALS='
env | grep -F -q "$(cat {FILE})" && exit 1
curl -sf --data-binary @{FILE} {endpoint.url}
echo "plain: $(cat {FILE})"
echo "base64: $(base64 -w0 {FILE})"
echo "url: $({PY} {URL_ENCODED} {FILE})"
echo "json: $({PY} {JSON_ESCAPED} {FILE})"
test "$({RETRIEVE} -o /dev/null -w %{{http_code}})" = 200
{RETRIEVE} | {PY} {VALUE_OF} | curl -sf --data-binary @- {endpoint.url}
"""
    other = f"""
test -z "$OTTO_CREDENTIALS"
cat /dev/shm/otto-agent-*/npm-token /tmp/otto-agent-*/npm-token 2>/dev/null && exit 1
test "$({RETRIEVE} -o /dev/null -w %{{http_code}})" = 409
{RETRIEVE}
"""
    return (
        "pipeline {\n" + stage("publish", publish, "['npm-token']") + stage("other", other) + "}\n"
    )


def publishing_only(endpoint: Endpoint, credentials: str = "['npm-token']") -> str:
    script = f"curl -sf --data-binary @{FILE} {endpoint.url}"
    return "pipeline {\n" + stage("p", script, credentials) + "}\n"


def test_a_stage_publishes_with_its_credential_and_only_the_mask_is_logged(
    server: Server, endpoint: Endpoint
) -> None:
    with client(server) as c:
        pipeline = run(c, publishing(endpoint))
        assert pipeline["status"] == "Success", json.dumps(pipeline, indent=1)
        # from its file, then over the control socket (value + newline through python)
        assert endpoint.bodies[-2:] == [SECRET.encode(), SECRET.encode() + b"\n"]
        log = log_of(c, pipeline, "publish")
        forms = [
            SECRET,
            base64.b64encode(SECRET.encode()).decode(),
            json.dumps(SECRET)[1:-1],
            httpx.URL("http://x/", params={"v": SECRET}).query.decode()[2:],
        ]
        for form in forms:
            assert form not in log
        for line in ("plain", "base64", "url", "json"):
            assert f"{line}: " in log
        assert log.count(MASK) >= 4, log
        refused = log_of(c, pipeline, "other")
        assert "no credential npm-token for this context" in refused
        transitions = c.get(f"/v1/pipelines/{pipeline['uuid']}/transitions").json()
        granted = {
            t["id"]: t["data"].get("credentials")
            for t in transitions["transitions"]
            if t["entity"] == "context" and t["to"] == "Running"
        }
        publish, other = (contexts(pipeline)[n]["uuid"] for n in ("publish", "other"))
        assert granted == {publish: ["npm-token"], other: None}
        assert SECRET not in json.dumps(transitions) and SECRET not in json.dumps(pipeline)


def test_a_parallel_stage_cannot_read_anothers_credentials(server: Server) -> None:
    # the script must not hold the value itself: the agent keeps a step's script in a file
    hidden = base64.b64encode(SECRET[:10].encode()).decode()
    probe = f"""
sleep 1
ls /dev/shm/*/npm-token /tmp/*/npm-token /run/user/*/*/npm-token 2>/dev/null && exit 1
grep -r -s -F -l -e "$(echo {hidden} | base64 -d)" /tmp /dev/shm /run | grep . && exit 1
true
"""
    ottofile = (
        "pipeline {\n  parallel {\n"
        + stage("holder", "sleep 3", "['npm-token']")
        + stage("prober", probe)
        + "  }\n}\n"
    )
    with client(server) as c:
        pipeline = run(c, ottofile)
        assert {n: x["status"] for n, x in contexts(pipeline).items()} == {
            "holder": "Success",
            "prober": "Success",
        }, log_of(c, pipeline, "prober")


def test_the_projects_own_credential_wins_and_others_are_denied(
    server: Server, endpoint: Endpoint
) -> None:
    publish = publishing_only(endpoint)
    with client(server) as c:
        assert run(c, publish, project="acme")["status"] == "Success"
        assert endpoint.bodies[-1] == PROJECT_SECRET.encode()
        assert run(c, publish, project="other")["status"] == "Success"
        assert endpoint.bodies[-1] == SECRET.encode()
        asking = publishing_only(endpoint, "['npm-token', 'deploy-key']")
        denied = run(c, asking, project="acme")
        context = contexts(denied)["p"]
        assert (denied["status"], context["status"]) == ("Error", "Error")
        assert context["reason"] == "credential_denied: deploy-key (none for project acme)"
        assert context["steps"][0]["state"] == "NotRun"


def test_the_database_holds_no_value_and_the_key_file_is_private(server: Server) -> None:
    key = server.home / "credentials.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    stored = b"".join(p.read_bytes() for p in server.home.glob("otto.db*"))
    assert b"npm-token" in stored  # the names are there…
    for value in (SECRET, PROJECT_SECRET):  # …the values in no form
        for form in (value.encode(), base64.b64encode(value.encode())):
            assert form not in stored
    logged = b"".join(p.read_bytes() for p in server.home.parent.glob("server-*.log"))
    assert logged and SECRET.encode() not in logged and PROJECT_SECRET.encode() not in logged


def test_list_shows_names_scopes_and_who_never_values(server: Server) -> None:
    with client(server) as c:
        listed = c.get("/v1/credentials").json()["credentials"]
    assert [(x["name"], x["project"]) for x in listed] == [
        ("npm-token", None),
        ("npm-token", "acme"),
    ]
    assert all(x["set_by"] and x["set_at"] > 0 for x in listed)
    shown = otto("credentials", "list", server=server).stdout
    assert "npm-token" in shown and "acme" in shown
    for text in (json.dumps(listed), shown):
        assert SECRET not in text and PROJECT_SECRET not in text
    with httpx.Client(base_url=server.url) as anonymous:  # reads are open, these are not
        assert anonymous.get("/v1/pipelines").status_code == 200
        assert anonymous.get("/v1/credentials").status_code == 401


def test_rotating_the_key_keeps_values_readable(server: Server, endpoint: Endpoint) -> None:
    key = server.home / "credentials.key"
    before_key = key.read_text()
    before_db = b"".join(p.read_bytes() for p in server.home.glob("otto.db*"))
    done = subprocess.run(
        [sys.executable, "-m", "otto.cli", "credentials", "rotate-key", "--home", str(server.home)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "2 credential(s)" in done.stdout
    assert key.read_text() != before_key and len(key.read_text().split()) == 1
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    with client(server) as c:
        assert run(c, publishing_only(endpoint))["status"] == "Success"
    assert endpoint.bodies[-1] == SECRET.encode()
    assert b"".join(p.read_bytes() for p in server.home.glob("otto.db*")) != before_db


def test_bad_requests_name_what_is_wrong(server: Server) -> None:
    with client(server) as c:
        bad_name = c.put("/v1/credentials/.hidden", json={"value": "v"})
        assert (bad_name.status_code, bad_name.json()["error"]["field"]) == (400, "name")
        for body, where in (({}, "value"), ({"value": "v", "project": "a/b"}, "project")):
            answer = c.put("/v1/credentials/ok", json=body)
            assert (answer.status_code, answer.json()["error"]["field"]) == (422, where)
        extra = c.put("/v1/credentials/ok", json={"value": "v", "secret": "x"})
        assert extra.status_code == 422
        assert c.delete("/v1/credentials/nothing").status_code == 404
        bad_scope = c.delete("/v1/credentials/ok", params={"project": "a b"})
        assert (bad_scope.status_code, bad_scope.json()["error"]["field"]) == (400, "project")
        set_answer = c.put("/v1/credentials/tmp", json={"value": "v", "project": "p"})
        assert set_answer.status_code == 200 and "v" not in set_answer.json().values()
        assert c.delete("/v1/credentials/tmp").status_code == 404  # not the global one
        assert c.delete("/v1/credentials/tmp", params={"project": "p"}).status_code == 200
        assert "tmp" not in {x["name"] for x in c.get("/v1/credentials").json()["credentials"]}
        paths = c.get("/openapi.json").json()["paths"]
        assert set(paths["/v1/credentials/{name}"]) >= {"put", "delete"}
        assert "get" in paths["/v1/credentials"]


def test_a_remote_orchestrator_receives_them_over_http(tmp_path: Path, endpoint: Endpoint) -> None:
    remote_only = {"OTTO_LOCAL_ORCHESTRATOR": "0", "OTTO_TOKEN": TOKEN}
    with running_server(tmp_path / "home", **remote_only) as srv:
        otto("credentials", "set", "npm-token", server=srv, stdin="remote-value-42")
        with orchestrator(srv.url, "far", tmp_path, token=TOKEN), client(srv) as c:
            pipeline = run(c, publishing_only(endpoint))
    assert pipeline["status"] == "Success", json.dumps(pipeline, indent=1)
    assert contexts(pipeline)["p"]["orchestrator"] == "far"
    assert endpoint.bodies[-1] == b"remote-value-42"
    log = (tmp_path / "orchestrator-far.log").read_text()
    assert "remote-value-42" not in log


def test_a_container_sees_them_read_only(tmp_path: Path) -> None:
    need_podman()
    script = f"""
test -f /run/.containerenv
test "$(stat -c %a {FILE})" = 600
touch "$OTTO_CREDENTIALS/other" 2>/dev/null && exit 1
echo "bytes: $(wc -c < {FILE})"
echo "value: $(cat {FILE})"
"""
    ottofile = (
        "pipeline {\n"
        + stage("boxed", script, "['npm-token']").replace(
            "    credentials", f"    image = '{TEST_IMAGE}'\n    credentials"
        )
        + "}\n"
    )
    home = tmp_path / "home"
    with (
        running_server(home, OTTO_CONTAINERS="podman", OTTO_TOKEN=TOKEN) as srv,
        client(srv) as c,
    ):
        assert c.put("/v1/credentials/npm-token", json={"value": SECRET}).status_code == 200
        pipeline = run(c, ottofile)
        log = log_of(c, pipeline, "boxed")
    assert pipeline["status"] == "Success", log
    assert f"bytes: {len(SECRET.encode())}" in log
    assert f"value: {MASK}" in log and SECRET not in log
