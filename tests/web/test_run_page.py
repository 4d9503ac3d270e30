"""A run's page as a newcomer reads it: a failed run opens at the log that says why, steps
are named by what they run, a block's steps have their logs, log lines are numbered and
linkable, the timeline waits folded, and a phone shows it all without sideways scrolling.
The auctions page links each auction to its run and context and folds one-bid rounds."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from serverkit import Server

from .conftest import Pages
from .dashboardkit import Otto, contexts, expect

if TYPE_CHECKING:
    from playwright.sync_api import Page

# 301 lines in the failing step's log: the shell's echo of its command, then line-1 … 300.
FAILING = """pipeline {
    stage { name = 'Checks' steps { sh 'echo checks-ok' } }
    stage {
        name = 'Package'
        steps {
            sh 'echo packing'
            dir 'dist' {
                sh 'echo inside-dist'
                sh 'for i in $(seq 1 300); do echo line-$i; done; exit 1'
            }
            sh 'echo never'
        }
    }
}"""
LAST_LINE = 301
# Everything a narrow screen must fit: long names, a long unbroken script, a long log line.
WIDE = "x" * 300
NARROW = f"""pipeline {{
    parallel {{
        stage {{ name = 'A-rather-long-stage-name-that-goes-on-and-on-and-on' steps {{
            sh 'echo {WIDE}; exit 1' }} }}
        stage {{ name = 'B' steps {{ dir 'some/deep/directory/name' {{ sh 'true' }} }} }}
    }}
}}"""
SCROLLED_TO_THE_END = """() => {
  const pre = document.getElementById("log-text");
  return pre.scrollHeight > pre.clientHeight
    && pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 2;
}"""
PHONE = {"width": 390, "height": 844}
# Elements whose right edge is past the viewport (the page would scroll sideways or cut
# them off), and how much wider the document is than the viewport.
OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const beyond = [...document.querySelectorAll("body *")].filter((el) => {
    const box = el.getBoundingClientRect();
    return box.width > 0 && box.height > 0 && box.right > width + 0.5;
  }).map((el) => `${el.tagName}#${el.id}.${el.className} ${el.getBoundingClientRect().right}`);
  return { beyond, scroll: document.documentElement.scrollWidth - width };
}"""


@pytest.fixture(scope="module")
def failed(server: Server) -> Iterator[dict]:
    """One finished run of FAILING on the package's shared server."""
    api = Otto(server)
    uuid = api.submit(FAILING)
    yield api.wait_complete(uuid, 60)
    api.close()


def steps_of(run: dict) -> tuple[dict, dict, list[str]]:
    """Package's context, its `dir` step, and the uuids of the block's steps."""
    package = contexts(run)["Package"]
    block = package["steps"][1]
    inner = run["model"]["batches"][1]["contexts"][0]["steps"][1]["parameters"][1]
    return package, block, [s["uuid"] for s in inner]


def test_a_failed_run_opens_at_the_failing_steps_last_lines(
    otto: Otto, failed: dict, page: Page
) -> None:
    package, block, (_, failing) = steps_of(failed)
    page.goto(f"{otto.url}/pipelines/{failed['uuid']}")
    log = page.locator("#log")
    expect(log).to_be_visible()
    # The block's step that failed, not the block's own log (`+ cd dist`).
    expect(page.locator("#log-title")).to_have_text(
        "Package › 2.2. sh: for i in $(seq 1 300); do echo line…"
    )
    expect(page.locator(f"a.step#step-{failing}")).to_have_attribute("aria-current", "true")
    # The last 200 lines, numbered from the log's start, scrolled to the end.
    lines = page.locator("#log-text .line")
    expect(lines).to_have_count(200)
    expect(lines.last).to_have_id(f"L{LAST_LINE}")
    expect(lines.last).to_have_text("line-300\n")
    expect(lines.first).to_have_id(f"L{LAST_LINE - 199}")
    expect(page.locator(f"#L{LAST_LINE} a.ln")).to_have_attribute("href", f"#L{LAST_LINE}")
    expect(page.locator("#log-info")).to_contain_text("last 200 lines of")
    page.wait_for_function(SCROLLED_TO_THE_END)
    # The line number is drawn, not text: the log's text is the log's.
    assert (
        page.locator(f"#L{LAST_LINE}").evaluate(
            "el => getComputedStyle(el.querySelector('a.ln'), '::before').content"
        )
        == f'"{LAST_LINE}"'
    )

    # The card says why, and links the step that did it.
    card = page.locator(f"article.context#ctx-{package['uuid']}")
    reason = card.locator(".reason")
    expect(reason).to_contain_text("exit code 1")
    expect(reason.get_by_role("link")).to_have_attribute("href", f"?step={failing}#log")
    # Steps are named by what they run; the block's steps sit under it.
    expect(card.locator(f"a.step#step-{block['uuid']}")).to_contain_text("dir: dist")
    expect(card.locator(f"a.step#step-{package['steps'][0]['uuid']}")).to_contain_text(
        "sh: echo packing"
    )
    nested = card.locator(f"li:has(> a#step-{block['uuid']}) > ol.nested a.step")
    expect(nested).to_have_count(2)
    expect(nested.first).to_contain_text("sh: echo inside-dist")

    # The timeline is folded, with its size.
    count = len(otto.transitions(failed["uuid"]))
    timeline = page.locator("details.transitions")
    expect(timeline.locator("summary")).to_have_text(f"Timeline ({count} transitions)")
    expect(page.locator("#timeline tr").first).to_be_hidden()
    timeline.locator("summary").click()
    expect(page.locator("#timeline tr[data-seq]")).to_have_count(count)


def test_a_blocks_steps_have_their_logs(otto: Otto, failed: dict, page: Page) -> None:
    _, block, (inside, _) = steps_of(failed)
    page.goto(f"{otto.url}/pipelines/{failed['uuid']}")
    page.locator(f"a.step#step-{inside}").click()
    expect(page.locator("#log-title")).to_have_text("Package › 2.1. sh: echo inside-dist")
    expect(page.locator("#log-text")).to_have_text("+ echo inside-dist\ninside-dist\n")
    assert f"step={inside}" in page.url
    page.locator(f"a.step#step-{block['uuid']}").click()
    expect(page.locator("#log-text")).to_have_text("+ cd dist\n")


def test_log_lines_are_linkable(otto: Otto, failed: dict, pages: Pages) -> None:
    _, _, (_, failing) = steps_of(failed)
    page = pages()
    page.goto(f"{otto.url}/pipelines/{failed['uuid']}")
    page.locator("#L250 a.ln").click()
    assert page.url.endswith(f"?step={failing}#L250")
    expect(page.locator("#L250")).to_have_class(re.compile(r"\blinked\b"))

    # The link, opened elsewhere: that line, shown and marked, even one before the window.
    for line, text in ((250, "line-249"), (5, "line-4")):
        other = pages()
        other.goto(f"{otto.url}/pipelines/{failed['uuid']}?step={failing}#L{line}")
        target = other.locator(f"#L{line}")
        expect(target).to_have_text(f"{text}\n")
        expect(target).to_be_in_viewport()
        expect(target).to_have_class(re.compile(r"\blinked\b"))
    expect(other.locator("#log-info")).to_contain_text("lines 1–")


def test_without_javascript_the_failure_and_its_log_show(
    otto: Otto, failed: dict, pages: Pages
) -> None:
    package, _, (_, failing) = steps_of(failed)
    page = pages(java_script_enabled=False)
    page.goto(f"{otto.url}/pipelines/{failed['uuid']}")
    expect(page.locator("#log-title")).to_contain_text("Package › 2.2. sh: for i in")
    expect(page.locator(f"#L{LAST_LINE}")).to_have_text("line-300\n")
    expect(page.locator(f"#ctx-{package['uuid']} .reason")).to_contain_text("exit code 1")
    page.goto(f"{otto.url}/pipelines/{failed['uuid']}?step={failing}&line=5#L5")
    expect(page.locator("#L5")).to_have_text("line-4\n")
    expect(page.locator("#L1")).to_have_text(re.compile(r"^\+ for i in"))
    expect(page.locator("#log-info").get_by_role("link", name="the end")).to_be_visible()


@pytest.mark.parametrize("path", ["/pipelines/{uuid}", "/", "/auctions", "/projects"])
def test_a_phone_sees_everything_without_scrolling_sideways(
    otto: Otto, pages: Pages, path: str
) -> None:
    uuid = otto.submit(NARROW)
    otto.wait_complete(uuid, 60)
    page = pages(viewport=PHONE)
    page.goto(otto.url + path.format(uuid=uuid))
    if path.startswith("/pipelines"):
        expect(page.locator("#log-text .line").first).to_be_visible()
        page.locator("details.transitions summary").click()  # the widest table, open
    found = page.evaluate(OVERFLOW)
    assert found["scroll"] <= 0 and not found["beyond"], found


def test_auctions_link_their_run_and_context_and_fold_one_bid_rounds(
    otto: Otto, failed: dict, page: Page
) -> None:
    package = contexts(failed)["Package"]
    page.goto(f"{otto.url}/auctions")
    # The local orchestrator is the only bidder: each round closed with its one bid.
    round_ = page.locator("details.auction", has=page.locator(f"a[href$='#ctx-{package['uuid']}']"))
    expect(round_).to_have_count(1)
    expect(round_).not_to_have_attribute("open", "")
    summary = round_.locator("summary")
    expect(summary).to_contain_text("Package (run ")
    expect(summary).to_contain_text("→ local, the only bid")
    run_link = summary.get_by_role("link", name=failed["uuid"][:8])
    expect(run_link).to_have_attribute("href", f"/pipelines/{failed['uuid']}")
    summary.get_by_role("link", name="Package").click()
    page.wait_for_url(f"**/pipelines/{failed['uuid']}#ctx-{package['uuid']}")
    expect(page.locator(f"#ctx-{package['uuid']}")).to_be_visible()


SKIPPING = """pipeline {
    stage { name = 'Build' steps { sh 'true' } }
    stage { name = 'Deploy' when { branch == 'main' } steps { sh 'echo deploying' } }
}"""


def test_a_skipped_stage_is_greyed_with_its_condition(otto: Otto, page: Page) -> None:
    uuid = otto.submit(SKIPPING)  # an API run has no branch: the condition is false
    run = otto.wait_complete(uuid)
    assert contexts(run)["Deploy"]["state"] == "Skipped"
    page.goto(f"{otto.url}/pipelines/{uuid}")
    deploy = page.locator("article.context[data-name='Deploy']")
    expect(deploy).to_have_attribute("data-state", "Skipped")
    expect(deploy).to_have_class(re.compile(r"\bst-skipped\b"))
    expect(deploy.locator(".skipped-why")).to_have_text(
        "Skipped: when { branch == 'main' } was false"
    )
    assert float(deploy.evaluate("el => getComputedStyle(el).opacity")) < 1
    build = page.locator("article.context[data-name='Build']")
    expect(build.locator(".skipped-why")).to_have_count(0)
    assert float(build.evaluate("el => getComputedStyle(el).opacity")) == 1
