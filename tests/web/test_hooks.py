"""Hooks on the run page: rollbacks and notifications stand after the run's own batches,
under "After the run", each saying what it reacts to; one that was not triggered is greyed
with why, one that ran has its status and its logs as any stage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .dashboardkit import Otto, contexts, expect

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

HOOKED = """pipeline {
    stage {
        name = 'Build'
        steps { sh 'echo built' }
        rollback { steps { sh 'echo never' } }
    }
    stage {
        name = 'Deploy'
        steps { sh 'exit 1' }
        rollback { steps { sh 'echo rolling-back' } }
    }
    notify {
        failure { steps { sh 'echo told-of-failure' } }
        success { steps { sh 'echo never' } }
    }
}"""


def card(page: Page, name: str) -> Locator:
    return page.locator(f"article.context[data-name='{name}']")


def test_hooks_stand_after_the_run_and_say_why(otto: Otto, page: Page) -> None:
    uuid = otto.submit(HOOKED)
    run = otto.wait_complete(uuid, 60)
    assert run["status"] == "Failed"  # the hooks that ran (Success) do not change it
    states = {name: c["state"] for name, c in contexts(run).items()}
    assert states["Deploy rollback"] == "Success" and states["notify success"] == "Skipped"

    page.goto(f"{otto.url}/pipelines/{uuid}")
    after = page.locator("#graph .after-run")
    expect(after.locator(":scope > h3")).to_have_text("After the run")
    expect(after.locator("section.batch")).to_have_count(2)  # rollbacks, then notifications
    expect(page.locator("#graph > section.batch")).to_have_count(2)  # the run's own
    expect(after.locator("article.context[data-name='Build']")).to_have_count(0)

    undo = card(page, "Deploy rollback")
    expect(undo.locator(".hook-on")).to_have_text("Runs rollback of Deploy")
    expect(undo).to_have_attribute("data-state", "Success")
    expect(undo.locator(".skipped-why")).to_have_count(0)
    expect(card(page, "notify failure").locator(".hook-on")).to_contain_text(
        "on failure of the run"
    )

    kept = card(page, "Build rollback")
    expect(kept).to_have_attribute("data-state", "Skipped")
    expect(kept.locator(".skipped-why")).to_have_text("Skipped: not run: Build succeeded")
    assert kept.evaluate("el => getComputedStyle(el).opacity") == "0.6"  # greyed
    told = card(page, "notify success").locator(".skipped-why")
    expect(told).to_have_text("Skipped: not run: The run failed")

    undo.locator("a.step").first.click()  # its log, as any stage's
    expect(page.locator("#log-title")).to_contain_text("Deploy rollback")
    expect(page.locator("#log-text")).to_contain_text("rolling-back")

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the hooks stack
    for box in (after.locator("section.batch").nth(i).bounding_box() for i in range(2)):
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
