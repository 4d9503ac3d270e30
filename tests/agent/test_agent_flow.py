"""A small pipeline end to end: check out a served repository, build, archive; a later
context unpacks the artifact and checks it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentkit import AgentHarness, commit, context, git, git_daemon, make_repo, sh, spec
from otto.steps.git import mirror_path

BUILD = """\
#!/bin/sh
set -e
mkdir -p out
echo "built from $(git rev-parse --short HEAD)" > out/app.txt
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    base = tmp_path_factory.mktemp("served")
    first = make_repo(base / "project", {"build.sh": BUILD})
    commit(base / "project", {"build.sh": BUILD.replace("built", "rebuilt")}, "newer")
    with git_daemon(base) as url:
        yield f"{url}/project", first, git("rev-parse", "--short", first, cwd=base / "project")


def test_checkout_build_archive_then_unarchive(
    harness: AgentHarness, repo: tuple[str, str, str]
) -> None:
    url, sha, short = repo
    build = context(sh("./build.sh"), spec("archive", artifacts="out", name="app"))
    inv = harness.invocation(build, checkout={"url": url, "sha": sha})
    proc = harness.spawn(inv)  # the real `python -m otto.agent --invocation FILE`
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert git("rev-parse", "HEAD", cwd=inv.workspace) == sha  # that exact commit
    assert "git clone" in harness.store.get(f"{harness.pipeline}/{build.uuid}/context.log").decode()

    check = context(
        spec("unarchive", "app"), sh(f'test "$(cat out/app.txt)" = "built from {short}"')
    )
    out = harness.run(check)
    assert out.status == "Success", out.log(1)
    assert not (out.workspace / "build.sh").exists()  # no checkout asked for here
    statuses = [e["status"] for e in harness.events(inv) if e["event"] != "step_started"]
    assert statuses == ["Success", "Success", "Success"]


def test_a_failed_checkout_is_an_error(harness: AgentHarness, repo: tuple[str, str, str]) -> None:
    url, _, _ = repo
    out = harness.run(context(sh("touch ran")), checkout={"url": url, "sha": "e" * 40})
    assert out.status == "Error"
    assert (out.result.reason or "").startswith("checkout failed: git fetch")
    assert not (out.workspace / "ran").exists()
    assert out.started() == []


def test_checkout_reuses_the_git_mirror(harness: AgentHarness, repo: tuple[str, str, str]) -> None:
    url, sha, _ = repo
    harness.run(context(sh("true")), checkout={"url": url, "sha": sha})
    mirror = mirror_path(harness.root / "cache", url)
    packs = sorted(p.name for p in (mirror / "objects" / "pack").iterdir())
    out = harness.run(context(sh("git log --oneline -1")), checkout={"url": url, "sha": sha})
    assert out.status == "Success"
    assert sorted(p.name for p in (mirror / "objects" / "pack").iterdir()) == packs
    # Self-contained (--dissociate): steps that cannot see the mirror still have the history.
    assert not Path(out.workspace, ".git", "objects", "info", "alternates").exists()
