"""Approval gates on the run page: a waiting stage shows its question with Approve and
Reject (its parameters asked for), and a diamond marks each gate before or after its
stage; answering from the page moves the run on, on record as the dashboard's."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .dashboardkit import Otto, contexts, expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

GATED = """
pipeline {{
    stage {{
        name = 'deploy'
        gates {{ enter {{ input message: 'Deploy to production?', parameters: 'version' }} }}
        steps {{ sh 'echo "$VAR_version" > {out}' }}
    }}
    stage {{
        name = 'verify'
        gates {{ exit {{ input 'Does it look good?' }} }}
        steps {{ sh 'true' }}
    }}
}}
"""


def waiting_in(page: Page, name: str) -> None:
    card = page.locator(f"article.context[data-name='{name}']")
    expect(card).to_have_attribute("data-state", "Waiting")


def test_approve_and_reject_from_the_run_page(otto: Otto, page: Page, tmp_path: Path) -> None:
    out = tmp_path / "version"
    uuid = otto.submit(GATED.format(out=out))
    page.goto(f"{otto.url}/")
    expect(page.locator(f"#run-{uuid}")).to_have_attribute("data-state", "Waiting")
    page.goto(f"{otto.url}/pipelines/{uuid}")
    waiting_in(page, "deploy")
    expect(page.locator("#summary h1 .state")).to_have_attribute("data-state", "Waiting")
    deploy = page.locator("article.context[data-name='deploy']")
    expect(deploy.locator(".question")).to_contain_text("Deploy to production?")
    expect(deploy.locator(".gate-mark")).to_have_count(1)
    expect(page.locator("article.context[data-name='verify'] .gate-mark.exit")).to_have_count(1)
    page.get_by_role("textbox", name="version").fill("2.0")
    page.get_by_role("button", name="Approve").click()

    waiting_in(page, "verify")  # it ran, then waits at its exit gate
    verify = page.locator("article.context[data-name='verify']")
    expect(verify.locator(".question")).to_contain_text("Does it look good?")
    verify.get_by_role("form", name="Reject verify").get_by_role("textbox").fill("no")
    verify.get_by_role("button", name="Reject").click()

    expect(page.locator("#summary h1 .state")).to_have_attribute("data-state", "Failed")
    run = otto.wait_complete(uuid)
    assert out.read_text() == "2.0\n"
    assert [c["state"] for c in contexts(run).values()] == ["Success", "Failed"]
    answers = [(t["reason"], t["data"].get("by"), t["data"].get("comment"))
               for t in otto.transitions(uuid) if t["reason"] in ("approved", "rejected")
               and t["entity"] == "context"]  # fmt: skip
    assert answers == [("approved", "dashboard", None), ("rejected", "dashboard", "no")]
