"""`POST /v1/webhooks/github` and `GET /v1/projects` on a real `otto server`: what is
accepted, what is refused (and with which status), what is ignored and why."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from hookkit import as_form, deliver, push_payload, sign

from serverkit import Server, running_server

SECRET = "hook-secret"
URL = "https://github.com/acme/app.git"
SHA = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("hooks") / "home"
    projects = home / "projects.d"
    projects.mkdir(parents=True)
    (projects / "app.yml").write_text(
        f"title: App\nsource:\n  url: {URL}\n  refspec: ['main', 'v*']\nsecret_env: APP_SECRET\n"
    )
    (projects / "broken.yml").write_text("title: Broken\nsource:\n  url: [unclosed\n")
    (projects / "invalid.yml").write_text(
        "title: Invalid\nsource:\n  url: https://example.com/x.git\nsecret_env: X\n"
        "supersede: sometimes\n"
    )
    with running_server(home, APP_SECRET=SECRET) as server:
        yield server


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def server_log(server: Server) -> str:
    return (server.home.parent / f"server-{server.url.rsplit(':', 1)[1]}.log").read_text()


def count(client: httpx.Client) -> int:
    return len(client.get("/v1/pipelines").json()["pipelines"])


def test_projects_are_listed_and_broken_files_reported_with_file_and_line(
    server: Server, client: httpx.Client
) -> None:
    projects = client.get("/v1/projects").json()["projects"]
    assert [p["name"] for p in projects] == ["app"]
    app = projects[0]
    assert app["source"] == {"url": URL, "refspec": ["main", "v*"]}
    assert app["pipeline"] == {"path": "Ottofile", "inline": None}
    assert app["secret_env"] == "APP_SECRET" and SECRET not in json.dumps(projects)
    assert app["checkout"] is True and app["supersede"] == "none"
    log = server_log(server)
    assert f"project file rejected file={server.home / 'projects.d' / 'broken.yml'}\n" in log
    assert "\n    line 3: not valid YAML" in log
    assert "\n    line 5: supersede: input should be 'none', 'pending' or 'running'\n" in log


def test_the_endpoints_are_in_the_openapi_document(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "post" in paths["/v1/webhooks/github"] and "get" in paths["/v1/projects"]


def test_unsigned_and_wrongly_signed_deliveries_are_refused(client: httpx.Client) -> None:
    body = push_payload(URL, "acme/app", "refs/heads/main", SHA)
    unsigned = deliver(client, body, None, delivery="x-1")
    assert unsigned.status_code == 401
    assert unsigned.json()["error"]["code"] == "unsigned"
    wrong = deliver(client, body, "guess", delivery="x-1")
    assert wrong.status_code == 401
    assert "X-Hub-Signature-256" in wrong.json()["error"]["message"]
    tampered = client.post(
        "/v1/webhooks/github",
        content=body + b" ",
        headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": "x-1",
                 "X-Hub-Signature-256": sign(SECRET, body)},
    )  # fmt: skip
    assert tampered.status_code == 401
    garbage = deliver(client, b"not json", "guess")
    assert garbage.status_code == 401  # refused before anything is parsed


def test_a_form_encoded_body_is_read_and_other_content_types_are_415(
    client: httpx.Client,
) -> None:
    payload = push_payload(URL, "acme/app", "refs/heads/main", "f" * 40)
    form = as_form(payload)
    accepted = deliver(client, form, SECRET, content_type=FORM)
    assert accepted.status_code == 202 and accepted.json()["accepted"] is True
    signed_json = client.post(
        "/v1/webhooks/github",
        content=form,
        headers={"Content-Type": FORM, "X-GitHub-Event": "push", "X-GitHub-Delivery": "f-1",
                 "X-Hub-Signature-256": sign(SECRET, payload)},
    )  # fmt: skip
    assert signed_json.status_code == 401  # GitHub signs the raw body, form and all
    for content_type in ("text/plain", "multipart/form-data; boundary=x"):
        refused = deliver(client, payload, SECRET, content_type=content_type)
        assert refused.status_code == 415, refused.text
        error = refused.json()["error"]
        assert error["code"] == "unsupported_media_type"
        assert error["accepted"] == ["application/json", FORM]
        assert f"expected application/json or {FORM}" in error["message"]
    charset = deliver(client, payload, SECRET, content_type="application/json; charset=utf-8")
    assert charset.status_code == 202
    no_payload = deliver(client, b"zen=calm", SECRET, content_type=FORM)
    assert no_payload.status_code == 400 and no_payload.json()["error"]["field"] == "payload"
    not_json = deliver(client, b"payload=%7Bnope", SECRET, content_type=FORM)
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    documented = client.get("/openapi.json").json()["paths"]["/v1/webhooks/github"]["post"]
    assert FORM in documented["responses"]["415"]["description"]


def test_ping_and_other_events(client: httpx.Client) -> None:
    repository = {"full_name": "acme/app", "clone_url": URL}
    ping = json.dumps({"zen": "Keep it logically awesome.", "repository": repository}).encode()
    answer = deliver(client, ping, SECRET, event="ping")
    assert answer.status_code == 200 and answer.json()["project"] == "app"
    issue = json.dumps({"action": "opened", "repository": {"clone_url": URL}}).encode()
    other = deliver(client, issue, SECRET, event="issues")
    assert other.status_code == 202 and other.json()["accepted"] is False
    assert "issues" in other.json()["ignored"]


def test_deleted_branches_and_refs_outside_the_refspec_are_ignored(client: httpx.Client) -> None:
    before = count(client)
    deleted = push_payload(URL, "acme/app", "refs/heads/main", "0" * 40, deleted=True)
    answer = deliver(client, deleted, SECRET)
    assert answer.status_code == 202 and answer.json()["ignored"] == "refs/heads/main was deleted"
    feature = push_payload(URL, "acme/app", "refs/heads/feature/x", SHA)
    answer = deliver(client, feature, SECRET)
    assert answer.status_code == 202
    assert "outside the refspec" in answer.json()["ignored"]
    time.sleep(0.5)
    assert count(client) == before


def test_malformed_payloads_are_4xx_naming_the_problem(client: httpx.Client) -> None:
    not_json = deliver(client, b"{oops", SECRET)
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"
    no_sha = push_payload(URL, "acme/app", "refs/heads/main", "zzz")
    answer = deliver(client, no_sha, SECRET)
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "after"
    elsewhere = push_payload(
        "https://github.com/acme/other.git", "acme/other", "refs/heads/main", SHA
    )
    answer = deliver(client, elsewhere, SECRET)
    assert answer.status_code == 404
    assert answer.json()["error"] == {
        "code": "unknown_repository",
        "message": "no project has source.url 'https://github.com/acme/other.git'"
        " (the payload's repository.clone_url)",
        "field": "repository.clone_url",
    }
    body = push_payload(URL, "acme/app", "refs/heads/main", SHA)
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(SECRET, body)}
    answer = client.post("/v1/webhooks/github", content=body, headers=headers)
    assert answer.status_code == 400 and "X-GitHub-Delivery" in answer.json()["error"]["message"]


def test_a_body_over_25_mb_is_refused(client: httpx.Client) -> None:
    big = b"{" + b" " * (25 * 1024 * 1024) + b"}"
    answer = deliver(client, big, SECRET)
    assert answer.status_code == 413


def test_a_push_is_acknowledged_fast(client: httpx.Client) -> None:
    body = push_payload(URL, "acme/app", "refs/tags/v1.0", SHA)
    started = time.perf_counter()
    answer = deliver(client, body, SECRET)
    took = time.perf_counter() - started
    assert answer.status_code == 202 and answer.json()["accepted"] is True
    assert took < 0.5  # the target is 100 ms; the fetch happens in the background


def test_incoming_deliveries_are_listed_newest_first_with_their_verdicts(
    server: Server, client: httpx.Client
) -> None:
    repository = {"full_name": "acme/app", "clone_url": URL}
    ping = json.dumps({"zen": "Practicality beats purity.", "repository": repository}).encode()
    assert deliver(client, ping, SECRET, event="ping", delivery="l-ping").status_code == 200
    issue = json.dumps({"action": "opened", "repository": repository}).encode()
    assert deliver(client, issue, SECRET, event="issues", delivery="l-issue").status_code == 202
    again = deliver(client, issue, SECRET, event="issues", delivery="l-issue")
    assert again.status_code == 200 and again.json() == {
        "duplicate": True,
        "delivery": "l-issue",
        "reason": "event 'issues' is not handled",
    }  # no run to name
    assert deliver(client, issue, None, event="issues", delivery="l-unsigned").status_code == 401
    listed = client.get("/v1/webhooks/deliveries", params={"limit": 4}).json()["deliveries"]
    assert [
        (d["delivery"], d["forge"], d["event"], d["project"], d["verdict"], d["status"])
        for d in listed
    ] == [
        ("l-unsigned", "github", "issues", None, "refused", 401),
        ("l-issue", "github", "issues", "app", "redelivery", 200),
        ("l-issue", "github", "issues", "app", "ignored", 202),
        ("l-ping", "github", "ping", "app", "ignored", 200),
    ]
    assert listed[0]["reason"] == "X-Hub-Signature-256 header is missing"
    assert listed[3]["reason"] == "ping" and listed[3]["pipeline"] is None
    assert (
        "INFO  otto.webhooks: webhook ignored forge=github event=issues delivery=l-issue"
        " project=app status=202 why=\"event 'issues' is not handled\"\n"
    ) in server_log(server)


def test_the_deliveries_list_is_bounded_and_its_limit_checked(client: httpx.Client) -> None:
    for value, message in (
        ("0", "limit: must be ≥ 1"),
        ("501", "limit: at most 500"),
        ("many", "limit: not an integer"),
    ):
        answer = client.get("/v1/webhooks/deliveries", params={"limit": value})
        assert answer.status_code == 400
        assert answer.json()["error"] == {
            "code": "invalid_query",
            "message": message,
            "field": "limit",
        }
    other = client.get("/v1/webhooks/deliveries", params={"verdict": "refused"})
    assert other.status_code == 400 and other.json()["error"]["field"] == "verdict"
    operation = client.get("/openapi.json").json()["paths"]["/v1/webhooks/deliveries"]["get"]
    (limit,) = operation["parameters"]
    assert limit["name"] == "limit" and limit["schema"]["maximum"] == 500
    assert "400" in operation["responses"]
