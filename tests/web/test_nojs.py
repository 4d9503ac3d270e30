"""Without JavaScript the dashboard still shows what there is: runs, the graph, a log."""

from __future__ import annotations

import re

from .conftest import Pages
from .dashboardkit import Otto, contexts, expect


def test_pages_render_without_javascript(otto: Otto, pages: Pages) -> None:
    talk = 'printf "\\033[32mgreen\\033[0m\\n"; n=1; echo "out-$n"'
    uuid = otto.submit(
        f"""
        pipeline {{
            parallel {{
                stage {{ name = 'one' steps {{ sh '{talk}' }} }}
                stage {{ name = 'two' steps {{ sh 'true' }} }}
            }}
        }}
        """
    )
    run = otto.wait_complete(uuid)
    one = contexts(run)["one"]
    step = one["steps"][0]["uuid"]
    page = pages(java_script_enabled=False)

    page.goto(f"{otto.url}/")
    expect(page.locator("#live")).to_have_text("static")
    row = page.locator(f"table.runs tr#run-{uuid}")
    expect(row).to_have_attribute("data-state", "Success")
    expect(row.locator(".state")).to_have_text("✓ Success")

    row.get_by_role("link", name=uuid[:8]).click()
    page.wait_for_url(f"**/pipelines/{uuid}")
    boxes = page.locator("#graph section.batch article.context")
    expect(boxes).to_have_count(2)
    for name in ("one", "two"):
        box = page.locator(f"article.context[data-name='{name}']")
        expect(box).to_have_attribute("data-state", "Success")
        expect(box.locator("h3")).to_have_text(name)
    expect(page.locator("#log")).to_be_hidden()
    page.locator("details.transitions summary").click()  # folded until asked for
    expect(page.locator("#timeline tr[data-seq]").first).to_be_visible()

    # The step link is a plain link too: the page comes back with the step's log.
    page.locator(f"a.step#step-{step}").click()
    page.wait_for_url(f"**/pipelines/{uuid}?step={step}#log")
    expect(page.locator("#log")).to_be_visible()
    expect(page.locator("#log-title")).to_have_text(re.compile(r"^one › 1\. sh: printf "))
    text = page.locator("pre#log-text")
    expect(text).to_contain_text("green\nout-1")
    assert "\x1b" not in (text.text_content() or "")
    expect(page.locator("#log-raw")).to_have_attribute(
        "href", f"/v1/objects/{uuid}/{one['uuid']}/{step}.log"
    )
