"""Browser tests of the dashboard: Playwright drives Debian's chromium
against a real `otto server` subprocess.

One browser for the whole session, a fresh context and page for every test. Without
chromium or Playwright the tests are skipped, unless OTTO_REQUIRE_BROWSER=1 (set by
.ci/run), which makes that a failure. A failing test leaves a full-page screenshot (and the
page's console) under `test-artifacts/` at the repository root.

Fixture order matters for the screenshot: a test lists `otto`/`servers` before `page`, so
the page is photographed before its runs are tidied away and its servers stopped (and
`page` itself depends on `gates`, which open only after the photograph).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from serverkit import Server, running_server, start_server, stop_server

from .dashboardkit import Gates, Otto

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LIVE_TIMEOUT_MS = 15_000  # two shared, busy cores: live updates get this long to show
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Every page records the ids of the transitions its event stream delivered, in order.
RECORD_EVENTS = """
window.__ottoEvents = [];
const NativeEventSource = window.EventSource;
window.EventSource = class extends NativeEventSource {
  constructor(...args) {
    super(...args);
    this.addEventListener("transition", (e) => window.__ottoEvents.push(Number(e.lastEventId)));
  }
};
"""
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def _require_browser() -> bool:
    return os.environ.get("OTTO_REQUIRE_BROWSER", "").strip() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> NoReturn:
    if _require_browser():
        pytest.fail(f"OTTO_REQUIRE_BROWSER is set but the browser is unavailable: {reason}")
    pytest.skip(f"browser unavailable (set OTTO_REQUIRE_BROWSER=1 to fail): {reason}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item: the page fixture's teardown reads it."""
    report: pytest.TestReport = yield
    item.stash.setdefault(REPORTS, {})[report.when] = report
    return report


def _failed(item: pytest.Item) -> bool:
    reports = item.stash.get(REPORTS, {})
    return any(r.failed for r in reports.values())


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, once for these tests. Not per session: Playwright's
    sync API keeps an event loop running in the main thread until it stops, and tests
    after these (e.g. `asyncio.run`) need none running."""
    try:
        from playwright.sync_api import Error, expect, sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not installed ({exc})")
    if not os.path.exists(CHROMIUM):
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    expect.set_options(timeout=LIVE_TIMEOUT_MS)
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Error as exc:
            _unavailable(f"chromium does not start: {exc.message.splitlines()[0]}")
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def gates(tmp_path: Path) -> Iterator[Gates]:
    """Files gated steps wait for; all open at teardown."""
    found = Gates(tmp_path / "gates")
    yield found
    found.open_all()


Pages = Callable[..., "Page"]


@pytest.fixture
def pages(browser: Browser, gates: Gates, request: pytest.FixtureRequest) -> Iterator[Pages]:
    """`pages(**context_options)`: a new page in a new browser context. After a failed test
    each is saved as a screenshot, with what its console said, under test-artifacts/; an
    uncaught JavaScript error fails an otherwise passing test."""
    opened: list[tuple[Page, list[str], list[str]]] = []

    def open_page(**options: Any) -> Page:
        context = browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **options})
        context.set_default_timeout(LIVE_TIMEOUT_MS)
        context.add_init_script(RECORD_EVENTS)
        page = context.new_page()
        console: list[str] = []
        errors: list[str] = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: errors.append(str(e)))
        opened.append((page, console, errors))
        return page

    yield open_page

    failed = _failed(request.node)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid.split("::", 1)[-1])
    for number, (page, console, errors) in enumerate(opened):
        if failed:
            ARTIFACTS.mkdir(exist_ok=True)
            stem = ARTIFACTS / (name if number == 0 else f"{name}-{number}")
            try:
                page.screenshot(path=f"{stem}.png", full_page=True)
            except Exception as exc:  # the page may be what broke; keep what we can
                console.append(f"(no screenshot: {exc})")
            text = "\n".join([f"url: {page.url}", *console, *(f"pageerror: {e}" for e in errors)])
            Path(f"{stem}.console.txt").write_text(text + "\n")
        page.context.close()
    if not failed:
        problems = [e for _, _, errors in opened for e in errors]
        assert not problems, f"uncaught JavaScript errors: {problems}"


@pytest.fixture
def page(pages: Pages) -> Page:
    return pages()


@pytest.fixture(scope="package")
def server(browser: Browser, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `otto server` for the tests that need nothing special of theirs; each looks only
    at its own runs. Four contexts run at once. (It asks for the browser first only so that
    no server starts when the browser tests are skipped.)"""
    home = tmp_path_factory.mktemp("dashboard") / "home"
    with running_server(home, OTTO_CONCURRENCY="4") as srv:
        yield srv


@pytest.fixture
def otto(server: Server) -> Iterator[Otto]:
    """The shared server's API; the runs a test leaves unfinished are aborted afterwards."""
    api = Otto(server)
    yield api
    api.abort_unfinished()
    api.close()


class Servers:
    """Servers a test starts (and restarts) itself, and clients of their APIs; all stopped
    and closed at teardown."""

    def __init__(self) -> None:
        self.started: list[Server] = []
        self.clients: list[Otto] = []

    def start(self, home: Path, port: int, **env: str) -> Server:
        home.mkdir(parents=True, exist_ok=True)
        server = start_server(home, port, **env)
        self.started.append(server)
        return server

    def stop(self, server: Server) -> None:
        stop_server(server)

    def api(self, server: Server, token: str | None = None) -> Otto:
        client = Otto(server, token=token)
        self.clients.append(client)
        return client


@pytest.fixture
def servers(browser: Browser) -> Iterator[Servers]:
    found = Servers()
    yield found
    for client in found.clients:
        client.close()
    for server in reversed(found.started):
        stop_server(server)
