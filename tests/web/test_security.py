"""The README's "Security" in the browser: a page on another loopback origin
cannot run a pipeline, an HTML artifact runs no script from the dashboard's origin, the
session cookie is out of script's reach, and with `read_token_required` the dashboard
works once logged in."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from serverkit import Server, free_port

from .conftest import CHROMIUM, CHROMIUM_ARGS, Pages, Servers
from .dashboardkit import contexts, expect

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

TOKEN = "s3cret-token"
OTTOFILE = "pipeline { stage { name = 'pwn' steps { sh 'id' } } }"


@contextmanager
def elsewhere(html: str) -> Iterator[str]:
    """Another origin on this machine (127.0.0.1, another port) serving one page."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def attack_page(otto: str) -> str:
    """What the probe's page did, and more: no-cors fetches (text/plain, an untyped Blob,
    a urlencoded body, an empty POST), a CORS JSON fetch, and two auto-posted forms."""
    body = json.dumps({"ottofile": OTTOFILE})
    return f"""<!doctype html><title>elsewhere</title>
<iframe name="sink"></iframe><iframe name="sink2"></iframe>
<form id="urlencoded" method="post" action="{otto}/v1/pipelines" target="sink">
  <input name="ottofile" value="{OTTOFILE}"></form>
<form id="plain" method="post" enctype="text/plain" action="{otto}/v1/pipelines" target="sink2">
  <input name='{{"ottofile": "{OTTOFILE}", "x": "' value='"}}'></form>
<script>
const url = {json.dumps(otto + "/v1/pipelines")};
const body = {json.dumps(body)};
window.attack = (async () => {{
  const sent = [];
  const tries = [
    {{ method: "POST", mode: "no-cors", credentials: "include",
       headers: {{ "Content-Type": "text/plain" }}, body }},
    {{ method: "POST", mode: "no-cors", credentials: "include", body: new Blob([body]) }},
    {{ method: "POST", mode: "no-cors", credentials: "include",
       headers: {{ "Content-Type": "application/x-www-form-urlencoded" }},
       body: "ottofile=" + encodeURIComponent({json.dumps(OTTOFILE)}) }},
  ];
  for (const init of tries) {{
    try {{ await fetch(url, init); sent.push("sent"); }} catch (e) {{ sent.push("failed"); }}
  }}
  try {{
    const r = await fetch(url, {{ method: "POST", credentials: "include",
      headers: {{ "Content-Type": "application/json" }}, body }});
    sent.push("cors " + r.status);
  }} catch (e) {{ sent.push("cors refused"); }}
  return sent;
}})();
</script>"""


def private_home(tmp_path: Path) -> Path:
    """A home whose `otto.yml` makes reads private."""
    home = tmp_path / "home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "otto.yml").write_text("read_token_required: true\n")
    return home


def log_in(page: Page, url: str, token: str = TOKEN) -> None:
    """The login page's form, as a person would use it."""
    page.goto(f"{url}/login")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()


def csp_complaints(page: Page) -> list[str]:
    found: list[str] = []

    def seen(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            found.append(message.text)

    page.on("console", seen)
    return found


@pytest.mark.parametrize("logged_in", [False, True], ids=["default-server", "logged-in"])
def test_a_second_origin_cannot_run_a_pipeline(
    servers: Servers, pages: Pages, tmp_path: Path, logged_in: bool
) -> None:
    """The default server (no token), and one with a token whose user is logged in: the
    session cookie is SameSite=Strict, but another port of 127.0.0.1 is the same site."""
    env = {"OTTO_TOKEN": TOKEN} if logged_in else {}
    server = servers.start(tmp_path / "home", free_port(), **env)
    otto = servers.api(server, token=TOKEN if logged_in else None)
    page = pages()
    if logged_in:
        log_in(page, otto.url)
        expect(page.locator("#logout")).to_be_visible()
    reached: list[tuple[str, int]] = []
    page.on(
        "response",
        lambda r: (
            reached.append((r.request.method, r.status)) if r.url.startswith(otto.url) else None
        ),
    )
    with elsewhere(attack_page(otto.url)) as origin:
        page.goto(origin)
        sent = page.evaluate("window.attack")
        page.locator("#urlencoded").evaluate("form => form.submit()")
        expect(page.frame_locator("iframe[name=sink]").locator("body")).to_contain_text(
            "cross_origin"
        )
        page.locator("#plain").evaluate("form => form.submit()")
        expect(page.frame_locator("iframe[name=sink2]").locator("body")).to_contain_text(
            "cross_origin"
        )
    assert sent == ["sent", "sent", "sent", "cors refused"]  # no-cors sends, blindly
    posts = [status for method, status in reached if method == "POST"]
    assert len(posts) >= 5 and set(posts) == {403}, reached
    # Nothing was created, nothing ran.
    answer = otto.client.get("/v1/pipelines")
    assert answer.status_code == 200 and answer.json()["pipelines"] == []


def test_an_html_artifact_runs_no_script(servers: Servers, pages: Pages, tmp_path: Path) -> None:
    """The probe's stored XSS: an `evil.html` artifact opened from the dashboard's origin,
    by a user whose browser holds the token (as the old dashboard kept it in localStorage)
    and then a session."""
    server = servers.start(tmp_path / "home", free_port(), OTTO_TOKEN=TOKEN)
    otto = servers.api(server, token=TOKEN)
    uuid = otto.submit("pipeline { stage { name = 'build' steps { sh 'true' } } }")
    otto.wait_complete(uuid)
    evil = """<!doctype html><html><head><title>evil</title></head><body><script>
      document.title = "pwned";
      const token = localStorage.getItem("otto-token");
      fetch("/v1/pipelines", {method: "POST", credentials: "include",
        headers: {"Content-Type": "application/json", "Authorization": "Bearer " + token},
        body: JSON.stringify({ottofile: "pipeline { stage { steps { sh 'id' } } }"})});
      fetch("/stolen?cookie=" + encodeURIComponent(document.cookie));
    </script><img src="/stolen-by-img"></body></html>"""
    key = f"{uuid}/artifacts/evil.html"
    put = otto.client.put(f"/v1/objects/{key}", content=evil, headers={"Content-Type": "text/html"})
    assert put.status_code == 200, put.text

    page = pages(accept_downloads=True)
    page.goto(f"{otto.url}/pipelines/{uuid}")
    page.evaluate("token => localStorage.setItem('otto-token', token)", TOKEN)
    link = page.locator("#artifacts").get_by_role("link", name="evil.html")
    expect(link).to_have_attribute("href", f"/v1/objects/{key}")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    # Opened as a page (not through the download link), it comes as a download all the same.
    with page.expect_download(timeout=5000) as opened:
        page.evaluate("url => { location.href = url; }", f"/v1/objects/{key}")
    with page.expect_download() as clicked:
        link.click()
    assert opened.value.suggested_filename == clicked.value.suggested_filename == "evil.html"
    page.wait_for_timeout(500)  # a script, had one run, would have acted by now
    expect(page).to_have_title(re.compile(r"·"))  # still the run page
    assert not [url for url in asked if "stolen" in url or url.endswith("/v1/pipelines")]
    assert [run["uuid"] for run in otto.client.get("/v1/pipelines").json()["pipelines"]] == [uuid]
    # What the browser was told, were it to show the object anyway.
    headers = page.request.get(f"{otto.url}/v1/objects/{key}").headers
    assert headers["content-type"] == "application/octet-stream"
    assert headers["content-security-policy"] == "sandbox; default-src 'none'"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-disposition"].startswith("attachment")
    # A session, unlike the token in localStorage, is out of script's reach.
    page.evaluate("localStorage.clear()")
    log_in(page, otto.url)
    expect(page.locator("#logout")).to_be_visible()
    assert [c["name"] for c in page.context.cookies()] == [
        "otto_session_" + otto.url.rsplit(":", 1)[1]
    ]
    assert "otto_session" not in page.evaluate("document.cookie")


def test_the_dashboard_works_after_logging_in(
    servers: Servers, pages: Pages, tmp_path: Path
) -> None:
    server = servers.start(
        private_home(tmp_path), free_port(), OTTO_TOKEN=TOKEN, OTTO_READ_TOKEN="reader"
    )
    otto = servers.api(server, token=TOKEN)
    red = 'printf "\\033[31mred\\033[0m\\n"'
    failing = f"pipeline {{ stage {{ name = 'talker' steps {{ sh '{red}; exit 1' }} }} }}"
    uuid = otto.submit(failing)
    run = otto.wait_complete(uuid)
    step = contexts(run)["talker"]["steps"][0]["uuid"]

    page = pages()
    complaints = csp_complaints(page)
    answer = page.goto(f"{otto.url}/pipelines/{uuid}")
    assert answer is not None and answer.status == 401
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert "talker" not in page.content()
    page.get_by_label("API token").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_have_text("wrong API token")
    # The read-only token is enough to look; the page comes back by itself.
    page.get_by_label("API token").fill("reader")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("article.context[data-name='talker']")).to_be_visible()
    assert page.url == f"{otto.url}/pipelines/{uuid}"
    expect(page.locator("#live")).to_have_text("live")  # the event stream, with the cookie

    # The step's log, coloured: the strict policy allows the dashboard's own scripts.
    page.locator(f"a.step#step-{step}").click()
    text = page.locator("pre#log-text")
    coloured = text.locator("span[style*='color']", has_text="red")
    expect(coloured).to_have_count(1)
    assert "rgb(" in (coloured.get_attribute("style") or "")

    # The read-only session cannot retry (asked for the API token, the user declines).
    page.on("dialog", lambda d: d.accept() if d.type == "confirm" else d.dismiss())
    page.get_by_role("button", name="Retry failed contexts").click()
    expect(page.locator("#notice")).to_contain_text("Refused: the read-only token")
    assert otto.run(uuid)["status"] == "Failed"

    # Script sees neither the token nor the session.
    assert "otto_session" not in page.evaluate("document.cookie")
    assert page.evaluate("JSON.stringify(localStorage)") == "{}"
    (cookie,) = page.context.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    assert "reader" not in cookie["value"] and TOKEN not in cookie["value"]

    # The other pages, live too.
    page.get_by_role("link", name="Runs").click()
    expect(page.locator(f"#run-{uuid}")).to_be_visible()
    expect(page.locator("#live")).to_have_text("live")
    page.get_by_role("link", name="Auctions").click()
    expect(page.locator("#live")).to_have_text("live")
    assert complaints == []

    # Logging out ends it: the next page asks again.
    page.locator("#logout").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert page.context.cookies() == []
    page.goto(f"{otto.url}/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_a_rebinding_name_reaches_nothing(browser: Browser, server: Server) -> None:
    """DNS rebinding, with chromium's resolver told that `rebind.test` is 127.0.0.1: a page
    loaded under that name (the attacker's, once its DNS answer changed) is same-origin
    with every URL of that name, so nothing in the browser stops its POSTs. Otto does:
    it does not answer to that name."""
    port = server.url.rsplit(":", 1)[1]
    with server.client() as client:
        before = client.get("/v1/pipelines").json()["pipelines"]
    rebound = f"http://rebind.test:{port}"
    launched = browser.browser_type.launch(
        executable_path=CHROMIUM,
        args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP rebind.test 127.0.0.1"],
    )
    try:
        page = launched.new_page()
        answer = page.goto(f"{rebound}/")
        assert answer is not None and answer.status == 421
        status = page.evaluate(
            """async (body) => (await fetch("/v1/pipelines", {method: "POST",
                 headers: {"Content-Type": "application/json"}, body})).status""",
            json.dumps({"ottofile": OTTOFILE}),
        )
        assert status == 421
        listed = page.evaluate('async () => (await fetch("/v1/pipelines")).status')
        assert listed == 421
    finally:
        launched.close()
    with server.client() as client:
        assert client.get("/v1/pipelines").json()["pipelines"] == before
