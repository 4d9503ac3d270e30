"""The README's "Security", over real HTTP on 127.0.0.1: requests from other
origins and under other host names act on nothing, objects cannot script the dashboard,
and `read_token_required` closes every read."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from otto.client import OttoClient
from otto.config import ConfigError, load_settings
from serverkit import Server, free_port, running_server, start_server, stop_server

OTTOFILE = "pipeline { stage { name = 'pwn' steps { sh 'id' } } }"
BODY = json.dumps({"ottofile": OTTOFILE})
TOKEN, READ_TOKEN = "s3cret-token", "reader-token"
PAGE_CSP = "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'"


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Server]:
    """A server whose reads need a token too, with a read-only token besides."""
    with running_server(
        private_home(tmp_path),
        OTTO_TOKEN=TOKEN,
        OTTO_READ_TOKEN=READ_TOKEN,
        OTTO_LOCAL_ORCHESTRATOR="0",
    ) as srv:
        yield srv


def private_home(tmp_path: Path) -> Path:
    """A home whose `otto.yml` makes reads private."""
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "otto.yml").write_text("read_token_required: true\n")
    return home


def runs(client: httpx.Client, **headers: str) -> list[dict]:
    answer = client.get("/v1/pipelines", headers=headers)
    assert answer.status_code == 200, answer.text
    return list(answer.json()["pipelines"])


def other_origin(server: Server) -> str:
    port = int(server.url.rsplit(":", 1)[1])
    return f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}"


# -- cross-site requests never act ----------------------------------------------------------


def test_a_cross_origin_text_plain_post_runs_nothing(server: Server) -> None:
    """What `fetch(…, {mode: 'no-cors', body})` from another page sends."""
    with server.client() as client:
        plain = {"Content-Type": "text/plain;charset=UTF-8", "Origin": other_origin(server)}
        answer = client.post("/v1/pipelines", content=BODY, headers=plain)
        assert answer.status_code == 403
        assert answer.json()["error"]["code"] == "cross_origin"
        assert "access-control-allow-origin" not in answer.headers
        # Without an Origin (a browser always sends one here), the type alone refuses it.
        answer = client.post("/v1/pipelines", content=BODY, headers={"Content-Type": "text/plain"})
        assert answer.status_code == 415
        assert answer.json()["error"]["code"] == "unsupported_media_type"
        # A body with no type at all (a Blob without one) is refused too.
        assert client.post("/v1/pipelines", content=BODY).status_code == 415
        assert runs(client) == []


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain"],
)
def test_a_form_post_runs_nothing(server: Server, content_type: str) -> None:
    """Every type an HTML form can send, from another origin and with none."""
    with server.client() as client:
        form = f"ottofile={OTTOFILE}"
        for headers in ({"Origin": other_origin(server)}, {}):
            answer = client.post(
                "/v1/pipelines", content=form, headers={"Content-Type": content_type, **headers}
            )
            assert answer.status_code == (403 if headers else 415), answer.text
        uuid = client.post("/v1/pipelines", json={"ottofile": OTTOFILE}).json()["uuid"]
        for action in ("abort", "retry"):
            answer = client.post(
                f"/v1/pipelines/{uuid}/{action}",
                content="x=1",
                headers={"Content-Type": content_type},
            )
            assert answer.status_code == 415
        assert [run["uuid"] for run in runs(client)] == [uuid]


def test_json_from_the_servers_own_origin_acts(server: Server) -> None:
    port = server.url.rsplit(":", 1)[1]
    with server.client() as client:
        own = client.post("/v1/pipelines", content=BODY, headers=_json(Origin=server.url))
        assert own.status_code == 201, own.text
        local = client.post(
            "/v1/pipelines",
            content=BODY,
            headers=_json(Origin=f"http://localhost:{port}", Host=f"localhost:{port}"),
        )
        assert local.status_code == 201, local.text
        # An empty POST (`curl -XPOST …/abort`, `otto abort`) needs no type.
        abort = client.post(f"/v1/pipelines/{own.json()['uuid']}/abort")
        assert abort.status_code in (202, 409), abort.text
        # `null` is the origin of sandboxed documents: never this server's.
        null = client.post("/v1/pipelines", content=BODY, headers=_json(Origin="null"))
        assert null.status_code == 403
        # Another port of the same host is another origin.
        other = client.post(
            "/v1/pipelines", content=BODY, headers=_json(Origin=other_origin(server))
        )
        assert other.status_code == 403
        assert len(runs(client)) == 2


def test_a_rebinding_host_gets_421(server: Server) -> None:
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1."""
    port = server.url.rsplit(":", 1)[1]
    evil = f"rebind.evil.example:{port}"
    with server.client() as client:
        for method, path in (("GET", "/v1/pipelines"), ("GET", "/"), ("POST", "/v1/pipelines")):
            answer = client.request(
                method,
                path,
                content=BODY if method == "POST" else None,
                headers=_json(Host=evil, Origin=f"http://{evil}"),
            )
            assert answer.status_code == 421, (path, answer.text)
            assert answer.json()["error"]["code"] == "unknown_host"
        for name in ("localhost", "127.0.0.1", "[::1]", "LOCALHOST.", "127.0.0.2"):
            assert (
                client.get("/v1/pipelines", headers={"Host": f"{name}:{port}"}).status_code == 200
            )
        # Health probes may use any name; they learn nothing.
        assert client.get("/health", headers={"Host": evil}).status_code == 200
        assert runs(client) == []


def test_a_preflight_gets_no_cors_grant(server: Server) -> None:
    with server.client() as client:
        for origin in (other_origin(server), server.url):
            answer = client.options(
                "/v1/pipelines",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type",
                },
            )
            assert answer.status_code >= 400
            assert not any(k.startswith("access-control-") for k in answer.headers)


def test_allowed_hosts_and_origins_are_settings(tmp_path: Path) -> None:
    with (
        running_server(
            tmp_path / "home",
            OTTO_LOCAL_ORCHESTRATOR="0",
            OTTO_ALLOWED_HOSTS="ci.example.com, build.example.com",
            OTTO_ALLOWED_ORIGINS="https://dash.example.com",
            OTTO_PUBLIC_URL="https://otto.example.com",
        ) as srv,
        srv.client() as client,
    ):
        for host in ("ci.example.com", "build.example.com:8443", "otto.example.com"):
            assert client.get("/v1/pipelines", headers={"Host": host}).status_code == 200
        assert client.get("/v1/pipelines", headers={"Host": "else.example.com"}).status_code == 421
        for origin in ("https://dash.example.com", "https://otto.example.com"):
            answer = client.post("/v1/pipelines", content=BODY, headers=_json(Origin=origin))
            assert answer.status_code == 201, answer.text
        answer = client.post(
            "/v1/pipelines", content=BODY, headers=_json(Origin="https://else.example.com")
        )
        assert answer.status_code == 403


def test_webhooks_keep_their_own_rules(server: Server) -> None:
    """Forges send no Origin and may send forms; their signature is what counts."""
    with server.client() as client:
        answer = client.post(
            "/v1/webhooks/github",
            content="payload=%7B%7D",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code != 415


# -- objects cannot script the dashboard ----------------------------------------------------


def test_objects_are_served_inert(server: Server) -> None:
    evil = b"<html><script>document.title='pwned'</script></html>"
    cases = {
        "run/artifacts/evil.html": ("text/html", "application/octet-stream"),
        "run/artifacts/logo.svg": ("image/svg+xml", "application/octet-stream"),
        "run/artifacts/feed.xml": ("application/xml", "application/octet-stream"),
        "run/artifacts/page.xhtml": ("application/xhtml+xml", "application/octet-stream"),
        "run/artifacts/notes.txt": ("text/plain", "text/plain"),
        "run/ctx/step.log": ("text/html", "text/plain; charset=utf-8"),
    }
    with server.client() as client:
        for key, (stored, _) in cases.items():
            put = client.put(f"/v1/objects/{key}", content=evil, headers={"Content-Type": stored})
            assert put.status_code == 200, put.text
        for key, (_, served) in cases.items():
            for method in ("GET", "HEAD"):
                answer = client.request(method, f"/v1/objects/{key}")
                assert answer.status_code == 200
                headers = answer.headers
                assert headers["content-type"] == served, key
                assert headers["x-content-type-options"] == "nosniff"
                assert headers["content-security-policy"] == "sandbox; default-src 'none'"
                name = key.rsplit("/", 1)[1]
                if key.endswith(".log"):
                    assert "content-disposition" not in headers
                else:
                    assert headers["content-disposition"].startswith(
                        f'attachment; filename="{name}"'
                    )
        ranged = client.get("/v1/objects/run/artifacts/evil.html", headers={"Range": "bytes=0-5"})
        assert ranged.status_code == 206
        assert ranged.headers["content-type"] == "application/octet-stream"
        assert "attachment" in ranged.headers["content-disposition"]


def test_pages_send_a_strict_policy(server: Server) -> None:
    with server.client() as client:
        for path in ("/", "/auctions", "/projects", "/pipelines/nope", "/login"):
            headers = client.get(path).headers
            for directive in PAGE_CSP.split("; "):
                assert directive in headers["content-security-policy"], (path, directive)
            assert headers["x-frame-options"] == "DENY"
            assert headers["referrer-policy"] == "same-origin"
            assert headers["x-content-type-options"] == "nosniff"
        assert client.get("/v1/pipelines").headers["x-content-type-options"] == "nosniff"


def test_templates_have_no_inline_script_style_or_handlers() -> None:
    """What the strict policy would refuse: keep it out of the markup."""
    folder = Path(__file__).resolve().parents[2] / "src" / "otto" / "web" / "templates"
    for template in folder.glob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template.name
        assert "<style" not in text and not re.search(r"\sstyle=", text), template.name
        assert not re.search(r"\son[a-z]+\s*=", text), template.name
        assert "javascript:" not in text, template.name


# -- read_token_required --------------------------------------------------------------------


def test_reads_need_a_token(private: Server) -> None:
    with private.client() as client:
        full, reader = _bearer(TOKEN), _bearer(READ_TOKEN)
        uuid = client.post("/v1/pipelines", json={"ottofile": OTTOFILE}, headers=full).json()[
            "uuid"
        ]
        put = client.put("/v1/objects/r/ctx/s.log", content=b"secret log\n", headers=full)
        assert put.status_code == 200
        reads = [
            "/v1/pipelines",
            f"/v1/pipelines/{uuid}",
            f"/v1/pipelines/{uuid}/transitions",
            "/v1/objects?prefix=r/",
            "/v1/objects/r/ctx/s.log",
            "/v1/events?after=0",
            "/v1/transitions",
            "/v1/projects",
            "/v1/auctions",
            "/openapi.json",
        ]
        for path in reads:
            answer = client.get(path)
            assert answer.status_code == 401, path
            assert answer.json()["error"]["code"] == "unauthorized", path
            assert client.get(path, headers=_bearer("wrong")).status_code == 401, path
            for headers in (full, reader):
                answer = client.get(path, headers=headers)
                assert answer.status_code == 200, (path, answer.text)
        assert client.get("/v1/objects/r/ctx/s.log", headers=reader).text == "secret log\n"
        for page in ("/", f"/pipelines/{uuid}", "/auctions", "/projects"):
            answer = client.get(page)
            assert answer.status_code == 401
            assert answer.headers["content-type"].startswith("text/html")
            assert 'action="/login"' in answer.text and "pwn" not in answer.text
            assert f'name="next" value="{page}"' in answer.text  # back here once logged in
            assert client.get(page, headers=reader).status_code == 200
        # What a login page needs stays open, and so does the health check.
        for path in ("/health", "/static/dashboard.css", "/static/login.js", "/login"):
            assert client.get(path).status_code == 200, path
        # The right bearer token vouches for a client under any name (an orchestrator
        # reaching the server through an alias); the wrong one does not, nor a session.
        alias = {"Host": "ci.internal:7670"}
        assert client.get("/v1/pipelines", headers={**alias, **reader}).status_code == 200
        assert client.get("/v1/pipelines", headers={**alias, **_bearer("no")}).status_code == 421
        assert client.get("/v1/pipelines", headers=alias).status_code == 421
        # The read-only token changes nothing.
        answer = client.post(f"/v1/pipelines/{uuid}/abort", headers=reader)
        assert answer.status_code == 401
        assert "read-only" in answer.json()["error"]["message"]
        assert (
            client.post("/v1/pipelines", json={"ottofile": OTTOFILE}, headers=reader).status_code
            == 401
        )
        assert client.get("/v1/orchestrators", headers=reader).status_code == 401


def test_the_event_stream_needs_the_token(private: Server) -> None:
    with private.client() as client:
        stream = {"Accept": "text/event-stream"}
        with client.stream("GET", "/v1/events", headers=stream) as answer:
            assert answer.status_code == 401
        with client.stream("GET", "/v1/events", headers={**stream, **_bearer(READ_TOKEN)}) as ok:
            assert ok.status_code == 200
            assert ok.headers["content-type"].startswith("text/event-stream")


def test_the_cli_client_sends_the_token_for_reads(private: Server) -> None:
    with OttoClient(private.url, token=TOKEN) as otto:
        uuid = otto.create(ottofile=OTTOFILE).uuid
        assert [p["uuid"] for p in otto.pipelines().pipelines] == [uuid]
        assert otto.pipeline(uuid)["uuid"] == uuid
        assert otto.transitions(uuid)
        assert otto.events(after=0)
        assert otto.read_object(f"{uuid}/nothing/here.log") is None  # 404, not 401
        stream = otto.stream_events(after=0, pipeline=uuid)
        assert next(iter(stream))["entity"] == "pipeline"
    with OttoClient(private.url, token=READ_TOKEN) as reader:
        assert [p["uuid"] for p in reader.pipelines().pipelines] == [uuid]
    env = {"OTTO_SERVER": private.url, "OTTO_TOKEN": TOKEN}
    ps = _otto("ps", "--json", env=env)
    assert ps.returncode == 0, ps.stderr
    assert uuid in ps.stdout
    env["OTTO_TOKEN"] = ""
    assert _otto("ps", env=env).returncode == 77


def test_read_token_required_without_a_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="read_token_required needs an API token"):
        load_settings(env={"OTTO_READ_TOKEN_REQUIRED": "true"}, home=str(tmp_path))
    with pytest.raises(ConfigError, match="read_token only counts"):
        load_settings(env={"OTTO_TOKEN": "a", "OTTO_READ_TOKEN": "b"}, home=str(tmp_path))
    home = tmp_path / "home"
    home.mkdir()
    started = subprocess.run(
        [
            sys.executable,
            "-m",
            "otto.cli",
            "server",
            "--home",
            str(home),
            "--port",
            str(free_port()),
        ],
        env=_env(OTTO_READ_TOKEN_REQUIRED="1"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert started.returncode == 64
    assert "read_token_required needs an API token" in started.stderr


# -- sessions ---------------------------------------------------------------------------------


def test_a_session_cookie_stands_for_the_token(tmp_path: Path) -> None:
    home = private_home(tmp_path)
    port = free_port()
    server = start_server(home, port, OTTO_TOKEN=TOKEN)
    try:
        with server.client() as client:
            assert client.post("/login", json={"token": "wrong"}).status_code == 401
            login = client.post("/login", json={"token": TOKEN})
            assert login.status_code == 200, login.text
            csrf = login.json()["csrf"]
            cookie = login.headers["set-cookie"]
            name, value = cookie.split(";", 1)[0].split("=", 1)
            assert name == f"otto_session_{port}"
            assert TOKEN not in value and csrf not in value
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
            # Reads with the cookie; a page carries the CSRF token for its scripts.
            assert client.get("/v1/pipelines").status_code == 200
            page = client.get("/")
            assert page.status_code == 200 and f'content="{csrf}"' in page.text
            # A mutation by cookie needs the CSRF token as well.
            answer = client.post("/v1/pipelines", json={"ottofile": OTTOFILE})
            assert (answer.status_code, answer.json()["error"]["code"]) == (403, "csrf")
            odd = {"X-Otto-CSRF": "caf\xe9".encode("latin-1")}  # not ASCII: still just refused
            answer = client.post("/v1/pipelines", json={"ottofile": OTTOFILE}, headers=odd)
            assert answer.status_code == 403
            created = client.post(
                "/v1/pipelines", json={"ottofile": OTTOFILE}, headers={"X-Otto-CSRF": csrf}
            )
            assert created.status_code == 201, created.text
            # … and from this origin only (another port of 127.0.0.1 is the same *site*:
            # SameSite=Strict does not keep the cookie from it).
            answer = client.post(
                "/v1/pipelines",
                json={"ottofile": OTTOFILE},
                headers={"X-Otto-CSRF": csrf, "Origin": other_origin(server)},
            )
            assert answer.status_code == 403
            out = client.post("/logout", json={})
            assert out.status_code == 200 and "Max-Age=0" in out.headers["set-cookie"]
            assert client.get("/v1/pipelines").status_code == 401
            client.cookies.set(name, value)  # a copy kept from before works until …
            assert client.get("/v1/pipelines").status_code == 200
        stop_server(server)
        # … the token changes: every session made from the old one ends.
        server = start_server(home, port, OTTO_TOKEN="another")
        with server.client() as client:
            client.cookies.set(name, value)
            assert client.get("/v1/pipelines").status_code == 401
    finally:
        stop_server(server)


def test_a_login_form_works_without_javascript(private: Server) -> None:
    with private.client() as client:
        answer = client.post(
            "/login",
            content=f"token={TOKEN}&next=/auctions",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/auctions"
        assert client.get("/auctions").status_code == 200
        elsewhere = client.post(
            "/login",
            content=f"token={TOKEN}&next=//evil.example/",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert elsewhere.headers["location"] == "/"
        cross = client.post(
            "/login",
            content=f"token={TOKEN}",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Origin": other_origin(private),
            },
        )
        assert cross.status_code == 403


def _json(**headers: str) -> dict[str, str]:
    return {"Content-Type": "application/json", **headers}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTO_")}
    return {**env, **extra}


def _otto(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otto.cli", *args],
        env=_env(**env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_otto_run_sends_its_embedded_servers_token(tmp_path: Path) -> None:
    """`otto run` with OTTO_TOKEN set: its own server wants the token, for reads too."""
    ottofile = tmp_path / "Ottofile"
    ottofile.write_text("pipeline { stage { name = 'hi' steps { sh 'echo hi' } } }\n")
    done = _otto(
        "run",
        str(ottofile),
        env={"OTTO_TOKEN": TOKEN, "OTTO_READ_TOKEN_REQUIRED": "true", "OTTO_SANDBOX": "none"},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout
