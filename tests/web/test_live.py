"""The dashboard stays live without a reload: the runs list, the pipeline graph, a step's log."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import httpx

from .dashboardkit import NO_POLLING, Gates, Otto, contexts, expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def mark(page: Page) -> None:
    """Mark the loaded document: a reload would lose the mark (`assert_not_reloaded`)."""
    page.evaluate("window.__marker = 1")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.__marker") == 1, "the page was reloaded"


# Where the graph's boxes are, measured in one go: live refreshes replace the graph's
# elements, so boxes measured one by one could come from different (or detached) elements.
GEOMETRY = """() => {
  const graph = document.getElementById("graph");
  const rect = (el) => {
    const r = el.getBoundingClientRect();
    return { left: r.left, right: r.right, top: r.top, bottom: r.bottom };
  };
  return {
    batches: [...graph.querySelectorAll("section.batch")].map(rect),
    left: rect(graph.querySelector("article.context[data-name='left']")),
    right: rect(graph.querySelector("article.context[data-name='right']")),
  };
}"""


def test_runs_list_shows_a_run_start_and_finish_live(otto: Otto, gates: Gates, page: Page) -> None:
    page.add_init_script(NO_POLLING)  # only the event stream can bring the new row
    page.goto(f"{otto.url}/")
    expect(page.locator("#live")).to_have_text("live")
    mark(page)

    uuid = otto.submit(
        f"pipeline {{ stage {{ name = 'gated' steps {{ sh '{gates.wait('list')}' }} }} }}"
    )
    row = page.locator(f"#run-{uuid}")
    expect(row).to_have_attribute("data-state", "Running")
    expect(row.locator(".state")).to_have_text(re.compile(r"Running"))
    expect(row.get_by_role("link", name=uuid[:8])).to_have_attribute("href", f"/pipelines/{uuid}")
    # Newest first.
    expect(page.locator("table.runs tbody tr").first).to_have_id(f"run-{uuid}")

    gates.open("list")
    expect(row).to_have_attribute("data-state", "Success")
    expect(row.locator(".state")).to_have_text(re.compile(r"Success"))
    assert otto.run(uuid)["status"] == "Success"
    assert_not_reloaded(page)


def test_graph_shows_a_parallel_batch_running_then_succeeding_live(
    otto: Otto, gates: Gates, page: Page
) -> None:
    uuid = otto.submit(
        f"""
        pipeline {{
            stage {{ name = 'first' steps {{ sh '{gates.wait("start")}' }} }}
            parallel {{
                stage {{ name = 'left'  steps {{ sh '{gates.wait("finish")}' }} }}
                stage {{ name = 'right' steps {{ sh '{gates.wait("finish")}' }} }}
            }}
            stage {{ name = 'last' steps {{ sh 'true' }} }}
        }}
        """
    )
    page.add_init_script(NO_POLLING)
    page.goto(f"{otto.url}/pipelines/{uuid}")
    expect(page.locator("#live")).to_have_text("live")
    mark(page)

    batches = page.locator("#graph section.batch")
    expect(batches).to_have_count(3)
    parallel = batches.nth(1)
    expect(parallel).to_have_class(re.compile(r"\bmode-parallel\b"))
    left = parallel.locator("article.context[data-name='left']")
    right = parallel.locator("article.context[data-name='right']")
    # Both boxes in the one batch, both on screen at once, still waiting.
    for name, box in (("left", left), ("right", right)):
        expect(box).to_be_in_viewport()
        expect(box).to_have_attribute("data-state", "Pending")
        expect(box.locator("h3")).to_have_text(name)

    gates.open("start")
    # Both Running at the same moment (one snapshot of the page) ...
    expect(parallel.locator("article.context[data-state='Running']")).to_have_count(2)
    for box in (left, right):
        expect(box.locator(".meta .state")).to_have_text(re.compile(r"Running"))
        expect(box.locator(".orch")).to_have_text("on local")
    # ... shown together in the batch's column, batches left to right.
    at = page.evaluate(GEOMETRY)
    before, parallel_box, after = at["batches"]
    one, two = at["left"], at["right"]
    assert one["left"] == two["left"] and one["bottom"] <= two["top"], at  # one column
    assert parallel_box["left"] <= one["left"] and one["right"] <= parallel_box["right"], at
    assert before["right"] <= parallel_box["left"] < parallel_box["right"] <= after["left"], at

    gates.open("finish")
    expect(parallel.locator("article.context[data-state='Success']")).to_have_count(2)
    for box in (left, right):
        expect(box.locator(".meta .state")).to_have_text(re.compile(r"Success"))
    expect(parallel).to_have_attribute("data-state", "Success")
    expect(page.locator("#summary h1 .state")).to_have_attribute("data-state", "Success")
    assert {c["name"]: c["state"] for c in contexts(otto.wait_complete(uuid)).values()} == {
        "first": "Success",
        "left": "Success",
        "right": "Success",
        "last": "Success",
    }
    assert_not_reloaded(page)


def test_a_steps_log_grows_live_with_colours(otto: Otto, gates: Gates, page: Page) -> None:
    # The shell echoes each command first, so the lines it prints must differ from the
    # command's text: `line-$n` is printed as line-1, then line-2.
    red = 'printf "\\033[31mred\\033[0m\\n"'
    talk = f'{red}; n=1; echo "line-$n"; {gates.wait("log")}; n=2; echo "line-$n"'
    uuid = otto.submit(f"pipeline {{ stage {{ name = 'talker' steps {{ sh '{talk}' }} }} }}")
    run = otto.wait(uuid, lambda r: contexts(r)["talker"]["steps"][0]["state"] == "Running")
    context = contexts(run)["talker"]
    step = context["steps"][0]["uuid"]
    key = f"{uuid}/{context['uuid']}/{step}.log"

    page.goto(f"{otto.url}/pipelines/{uuid}")
    mark(page)
    log, text = page.locator("#log"), page.locator("pre#log-text")
    expect(log).to_be_hidden()
    page.locator(f"a.step#step-{step}").click()

    expect(log).to_be_visible()
    expect(page.locator("#log-title")).to_have_text(re.compile(r"^talker › 1\. sh: printf "))
    expect(text).to_contain_text("line-1")
    expect(text).not_to_contain_text("line-2")
    expect(page.locator(f"a.step#step-{step}")).to_have_attribute("aria-current", "true")
    assert f"step={step}" in page.url
    # ANSI colours become styled spans, not escape codes.
    coloured = text.locator("span[style*='color']", has_text="red")
    expect(coloured).to_have_count(1)
    assert "rgb(" in (coloured.get_attribute("style") or "")
    assert "\x1b" not in (text.text_content() or "")
    raw = page.locator("#log-raw")
    expect(raw).to_have_text("raw log")
    expect(raw).to_have_attribute("href", f"/v1/objects/{key}")

    gates.open("log")
    expect(text).to_contain_text("line-2")
    expect(page.locator(f"a.step#step-{step}")).to_have_attribute("data-state", "Success")
    # What the page shows is the whole raw log, once, without its escape codes.
    stored = httpx.get(f"{otto.url}/v1/objects/{key}", timeout=10).text
    assert stored.count("line-2") == 1, stored
    expect(text).to_have_text(ANSI.sub("", stored))
    assert_not_reloaded(page)


def test_a_100_mb_log_opens_at_its_tail_and_the_tab_stays_responsive(
    otto: Otto, gates: Gates, page: Page
) -> None:
    # 100 MB of numbered lines, then a last line; the step waits so the log stays live.
    big = f"seq 1 14000000 | head -c 100000000; echo; echo the-end; {gates.wait('big')}"
    uuid = otto.submit(f"pipeline {{ stage {{ name = 'big' steps {{ sh '{big}' }} }} }}")
    run = otto.wait(uuid, lambda r: contexts(r)["big"]["steps"][0]["state"] == "Running", 60)
    context = contexts(run)["big"]
    step = context["steps"][0]["uuid"]
    key = f"{uuid}/{context['uuid']}/{step}.log"

    def size() -> int:
        return int(httpx.head(f"{otto.url}/v1/objects/{key}", timeout=10).headers["content-length"])

    deadline = time.monotonic() + 60
    while size() < 100_000_000 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert size() >= 100_000_000

    page.goto(f"{otto.url}/pipelines/{uuid}?step={step}#log")
    text = page.locator("pre#log-text")
    expect(text).to_contain_text("the-end")
    expect(page.locator("#log-info")).to_contain_text("of 95.4 MB")
    # Only the tail is on the page, and the page answers at once.
    shown = page.evaluate("document.getElementById('log-text').textContent.length")
    assert 0 < shown <= 1_100_000, shown
    started = time.monotonic()
    page.evaluate("1 + 1")
    assert time.monotonic() - started < 10.0  # a frozen tab takes minutes; a loaded box, seconds
    gates.open("big")
    expect(page.locator(f"a.step#step-{step}")).to_have_attribute("data-state", "Success")
