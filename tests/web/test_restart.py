"""After the server restarts, an open run page catches up without a reload and without
missing (or repeating) a transition."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from serverkit import free_port

from .conftest import Servers
from .dashboardkit import NO_POLLING, Gates, expect

if TYPE_CHECKING:
    from playwright.sync_api import Page


def test_run_page_catches_up_after_a_server_restart(
    servers: Servers, gates: Gates, tmp_path: Path, page: Page
) -> None:
    home, port = tmp_path / "home", free_port()
    env = {"OTTO_SHUTDOWN_GRACE": "0"}  # SIGTERM hands running contexts back at once
    first = servers.start(home, port, **env)
    otto = servers.api(first)
    uuid = otto.submit(
        f"""
        pipeline {{
            stage {{ name = 'gated' steps {{ sh '{gates.wait("restart")}' }} }}
            stage {{ name = 'after' steps {{ sh 'true' }} }}
        }}
        """
    )
    page.add_init_script(NO_POLLING)  # the catching up is the event stream's doing
    page.goto(f"{first.url}/pipelines/{uuid}")
    page.evaluate("window.__marker = 1")
    gated = page.locator("article.context[data-name='gated']")
    live = page.locator("#live")
    expect(gated.locator("a.step")).to_have_attribute("data-state", "Running")
    expect(live).to_have_text("live")
    loaded_after = int(page.evaluate("document.body.dataset.after"))

    servers.stop(first)
    expect(live).to_have_text("reconnecting")
    second = servers.start(home, port, **env)
    expect(live).to_have_text("live")
    # The context was handed back at shutdown and runs again, a second attempt.
    expect(gated.locator(".attempt")).to_have_text("attempt 2")
    expect(gated).to_have_attribute("data-state", "Running")

    gates.open("restart")
    expect(page.locator("#summary h1 .state")).to_have_attribute("data-state", "Success")
    expect(page.locator("article.context[data-name='after']")).to_have_attribute(
        "data-state", "Success"
    )
    otto = servers.api(second)
    assert otto.wait_complete(uuid)["status"] == "Success"
    transitions = otto.transitions(uuid)
    seqs = [t["seq"] for t in transitions]
    assert "handed_back" in {t["reason"] for t in transitions}
    # Every transition the API has is on the page, once, in order.
    rows = page.locator("#timeline tr[data-seq]")
    expect(rows).to_have_count(len(seqs))
    shown = rows.evaluate_all("rows => rows.map((row) => Number(row.dataset.seq))")
    assert shown == seqs
    # The event stream resumed where it broke off: each later transition came once.
    streamed = page.evaluate("window.__ottoEvents")
    assert streamed == [s for s in seqs if s > loaded_after]
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"
