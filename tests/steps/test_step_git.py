"""`git` against repositories served by a real `git daemon` on 127.0.0.1."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agentkit import AgentHarness, commit, context, free_port, git, git_daemon, make_repo, spec
from otto.steps.git import mirror_path


@dataclass
class Served:
    url: str
    main: str  # head of main
    first: str  # the first commit on main
    feature: str  # head of the `feature` branch
    orphan: str  # a commit no branch or tag holds any more


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    base = tmp_path_factory.mktemp("served")
    repo = base / "app"
    first = make_repo(repo, {"README": "app\n", "blob.bin": os.urandom(600_000)})
    git("tag", "v1.0", cwd=repo)
    git("checkout", "--quiet", "-b", "feature", cwd=repo)
    feature = commit(repo, {"feature.txt": "feature\n"}, "feature")
    git("checkout", "--quiet", "-b", "doomed", cwd=repo)
    orphan = commit(repo, {"doomed.txt": "gone\n"}, "doomed")
    git("checkout", "--quiet", "main", cwd=repo)
    git("branch", "--quiet", "-D", "doomed", cwd=repo)
    main = commit(repo, {"README": "app v2\n"}, "second")
    with git_daemon(base) as url:
        yield Served(f"{url}/app", main, first, feature, orphan)


def head(workspace: Path, into: str = "app") -> str:
    return git("rev-parse", "HEAD", cwd=workspace / into)


def test_clones_the_default_branch(harness: AgentHarness, served: Served) -> None:
    out = harness.run(context(spec("git", served.url)))
    assert out.status == "Success", out.log()
    assert head(out.workspace) == served.main
    assert (out.workspace / "app" / "README").read_text() == "app v2\n"
    assert "+ git clone --reference-if-able" in out.log()


def test_clones_a_branch_into_a_directory(harness: AgentHarness, served: Served) -> None:
    out = harness.run(context(spec("git", url=served.url, branch="feature", into="src/x")))
    assert out.status == "Success", out.log()
    assert head(out.workspace, "src/x") == served.feature
    assert (out.workspace / "src/x/feature.txt").exists()


@pytest.mark.parametrize("which", ["first", "feature", "orphan", "tag"])
def test_checks_out_an_exact_commit(harness: AgentHarness, served: Served, which: str) -> None:
    ref = "v1.0" if which == "tag" else getattr(served, which)
    expected = served.first if which == "tag" else ref
    out = harness.run(context(spec("git", url=served.url, ref=ref)))
    assert out.status == "Success", out.log()
    assert head(out.workspace) == expected


def test_shallow_clone(harness: AgentHarness, served: Served) -> None:
    out = harness.run(context(spec("git", url=served.url, depth="1")))
    assert out.status == "Success", out.log()
    assert git("rev-list", "--count", "HEAD", cwd=out.workspace / "app") == "1"


def test_a_second_clone_borrows_from_the_mirror(harness: AgentHarness, served: Served) -> None:
    first = harness.run(context(spec("git", served.url)))
    mirror = mirror_path(harness.root / "cache", served.url)
    packs = sorted(p.name for p in (mirror / "objects" / "pack").iterdir())
    second = harness.run(context(spec("git", served.url)))
    assert first.status == second.status == "Success"
    # The mirror had everything: its update fetched no new pack.
    assert sorted(p.name for p in (mirror / "objects" / "pack").iterdir()) == packs
    # The clone copied what it borrowed (--dissociate): its later steps, sandboxed or in
    # a container, do not see the mirror, and need not.
    clone = second.workspace / "app"
    assert not (clone / ".git" / "objects" / "info" / "alternates").exists()
    git("fsck", "--no-dangling", cwd=clone)


def test_failures_fail_the_step(harness: AgentHarness, served: Served) -> None:
    missing = harness.run(context(spec("git", served.url + "-missing")))
    assert missing.status == "Failed"
    assert missing.result.reason == "git clone failed (exit code 128)"
    bad_ref = harness.run(context(spec("git", url=served.url, ref="f" * 40)))
    assert bad_ref.status == "Failed"
    assert "git fetch" in (bad_ref.result.reason or "")
    escape = harness.run(context(spec("git", url=served.url, into="../../x")))
    assert "leaves the workspace" in (escape.result.reason or "")


class _AuthRequired(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="private"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_never_prompts_for_credentials(harness: AgentHarness) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthRequired)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/private.git"
        out = harness.run(context(spec("git", url=url, timeout="20")))
    finally:
        server.shutdown()
        server.server_close()
    assert out.status == "Failed"
    assert out.result.reason != "timeout"
    assert "terminal prompts disabled" in out.log()


def test_credentials_in_the_url_are_masked(harness: AgentHarness) -> None:
    url = f"http://otto:t0ps3cret-pw@127.0.0.1:{free_port()}/private.git"
    out = harness.run(context(spec("git", url=url, into="x")))
    assert out.status == "Failed"
    assert "t0ps3cret-pw" not in out.log()
    assert "http://otto:****@127.0.0.1" in out.log()
