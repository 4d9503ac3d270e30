"""A run refused at creation: its page says why, the Ottofile's line and a caret under the
column, and offers nothing to retry."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .dashboardkit import Otto, expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

BAD = "pipeline {\n  stage {\n    name = 'Build'\n    steps {\n      shh 'make'\n    }\n  }\n}\n"

# The horizontal position of one character of the message's text, as laid out.
CHARACTER_X = """([element, offset]) => {
  const range = document.createRange();
  range.setStart(element.firstChild, offset);
  range.setEnd(element.firstChild, offset + 1);
  return range.getBoundingClientRect().left;
}"""


def test_the_run_page_says_why_with_a_caret_and_offers_no_retry(otto: Otto, page: Page) -> None:
    uuid = otto.submit(BAD)
    message = otto.wait_complete(uuid)["rejected"]["message"]
    page.goto(f"{otto.url}/pipelines/{uuid}")

    expect(page.locator("#summary h1 .state")).to_have_attribute("data-state", "Error")
    alert = page.get_by_role("alert")
    expect(alert.get_by_role("heading")).to_have_text(
        "Rejected (config_error): nothing of this run ran"
    )
    shown = page.locator("#rejected-message")
    expect(shown).to_have_text(message)
    first, source, caret = shown.inner_text().splitlines()
    assert first.startswith("ottofile:5:7: unknown step `shh` (did you mean `sh`?)")
    assert (source, caret) == ("      shh 'make'", "      ^")
    at_source = len(first) + 1 + 6  # offsets in the text: the `s` of `shh`, and the caret
    at_caret = len(first) + 1 + len(source) + 1 + 6
    handle = shown.element_handle()
    x = {
        at: page.evaluate(CHARACTER_X, [handle, at]) for at in (at_source - 6, at_source, at_caret)
    }
    assert x[at_caret] == x[at_source] > x[at_source - 6]  # the caret right under the column

    expect(page.get_by_role("button", name=re.compile("Retry"))).to_have_count(0)
    expect(page.get_by_role("button", name="Abort")).to_have_count(0)
