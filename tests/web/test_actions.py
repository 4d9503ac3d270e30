"""Abort from the run page: with a confirmation, and with a session made from the API token
when there is one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from serverkit import UNSANDBOXED, free_port

from .conftest import Servers
from .dashboardkit import Gates, contexts, expect, read_pid, wait_gone

if TYPE_CHECKING:
    from playwright.sync_api import Dialog, Page, Request


def tree(parent: Path, child: Path) -> str:
    """A step whose shell waits for a child: both PIDs are written down."""
    return f"sleep 60 & echo $! > {child}; echo $$ > {parent}; wait"


def test_abort_from_the_page_stops_the_run(servers: Servers, tmp_path: Path, page: Page) -> None:
    otto = servers.api(servers.start(tmp_path / "home", free_port(), **UNSANDBOXED))
    parent, child = tmp_path / "sh.pid", tmp_path / "sleep.pid"
    uuid = otto.submit(
        f"""
        pipeline {{
            stage {{ name = 'long' steps {{ sh '{tree(parent, child)}' }} }}
            stage {{ name = 'later' steps {{ sh 'true' }} }}
        }}
        """
    )
    pids = [read_pid(parent), read_pid(child)]
    page.goto(f"{otto.url}/pipelines/{uuid}")
    long = page.locator("article.context[data-name='long']")
    expect(long).to_have_attribute("data-state", "Running")

    answers = ["dismiss", "accept"]
    dialogs: list[str] = []
    posts: list[str] = []

    def answer(dialog: Dialog) -> None:
        dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.accept() if answers.pop(0) == "accept" else dialog.dismiss()

    page.on("dialog", answer)
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    abort = page.get_by_role("button", name="Abort")

    abort.click()  # the confirmation, declined: nothing happens
    assert dialogs == ["confirm: Abort this run?"]
    assert posts == []
    assert otto.run(uuid)["state"] == "Running"

    abort.click()  # accepted
    expect(page.locator("#summary h1 .state")).to_have_attribute("data-state", "Aborted")
    expect(long).to_have_attribute("data-state", "Aborted")
    expect(page.locator("article.context[data-name='later']")).to_have_attribute(
        "data-state", "NotRun"
    )
    expect(abort).to_have_count(0)  # a finished run cannot be aborted again ...
    expect(page.get_by_role("button", name="Retry failed contexts")).to_be_visible()  # ... retried
    assert posts == [f"{otto.url}/v1/pipelines/{uuid}/abort"]
    assert len(dialogs) == 2

    run = otto.wait_complete(uuid)
    assert (run["state"], run["status"]) == ("Complete", "Aborted")
    assert contexts(run)["long"]["steps"][0]["state"] == "Aborted"
    for pid in pids:
        wait_gone(pid)


def test_abort_asks_for_the_token_of_a_protected_server(
    servers: Servers, gates: Gates, tmp_path: Path, page: Page
) -> None:
    token = "s3cret-token"
    server = servers.start(
        tmp_path / "home", free_port(), OTTO_TOKEN=token, OTTO_SHUTDOWN_GRACE="0"
    )
    otto = servers.api(server, token=token)
    uuid = otto.submit(
        f"pipeline {{ stage {{ name = 'gated' steps {{ sh '{gates.wait('token')}' }} }} }}"
    )
    page.goto(f"{otto.url}/pipelines/{uuid}")
    # Its step runs: an abort that comes before the agent has started its step waits for
    # the orchestrator's next lease renewal (up to 10 s), which is not what this is about.
    expect(page.locator("article.context[data-name='gated'] a.step")).to_have_attribute(
        "data-state", "Running"
    )
    # The first token given is mistyped; the second is right.
    tokens = ["wrong", token]
    dialogs: list[str] = []

    def answer(dialog: Dialog) -> None:
        dialogs.append(dialog.type)
        dialog.accept(tokens.pop(0)) if dialog.type == "prompt" else dialog.accept()

    page.on("dialog", answer)
    posts: list[Request] = []
    page.on("request", lambda r: posts.append(r) if r.method == "POST" else None)
    abort = page.get_by_role("button", name="Abort")

    abort.click()
    expect(page.locator("#notice")).to_have_text(re.compile(r"Refused: wrong API token"))
    assert dialogs == ["confirm", "prompt"]
    assert otto.run(uuid)["state"] == "Running"

    abort.click()
    expect(page.locator("#summary h1 .state")).to_have_attribute("data-state", "Aborted")
    assert dialogs == ["confirm", "prompt", "confirm", "prompt"]
    # Each refused abort asks for the token once and exchanges it for a session (the wrong
    # one is refused); the abort sent again with the session carries its CSRF token.
    abort_url, login_url = f"{otto.url}/v1/pipelines/{uuid}/abort", f"{otto.url}/login"
    assert [r.url for r in posts] == [abort_url, login_url, abort_url, login_url, abort_url]
    assert [r.post_data_json for r in posts if r.url == login_url] == [
        {"token": "wrong"},
        {"token": token},
    ]
    assert all(r.headers.get("content-type") == "application/json" for r in posts)
    assert "x-otto-csrf" in posts[-1].headers and "authorization" not in posts[-1].headers
    # The browser keeps no token: a session cookie that script cannot read, and no more.
    assert page.evaluate("JSON.stringify(localStorage)") == "{}"
    assert "otto_session" not in page.evaluate("document.cookie")
    (cookie,) = page.context.cookies()
    assert cookie["name"].startswith("otto_session") and token not in cookie["value"]
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    assert otto.wait_complete(uuid)["status"] == "Aborted"
