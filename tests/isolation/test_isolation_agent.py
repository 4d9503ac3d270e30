"""Isolation at the agent: the standard steps and step libraries work inside the host
sandbox, and see only what they are given."""

from __future__ import annotations

from pathlib import Path

from agentkit import AgentHarness, context, git_daemon, make_repo, sh, spec
from isolationkit import need_bubblewrap
from otto.isolation import SandboxSpec
from otto.steps.library import library_key
from steps.test_step_library import library

SANDBOX = SandboxSpec(kind="bubblewrap")

SCRIPT = """#!/bin/sh
set -e
echo "library sees $(cat "$1" | head -c 1)"
echo made > "$OTTO_WORKSPACE/by-library.txt"
ls "$HOME" >/dev/null
cat /etc/hostname 2>/dev/null || hostname
"""
MANIFEST = "symbol: make_file\ndescription: d\nentrypoint: run.sh\nparameters: []\n"


def test_git_and_a_step_library_run_in_the_sandbox(tmp_path: Path) -> None:
    need_bubblewrap()
    served = tmp_path / "served"
    make_repo(served / "app", {"README": "from the daemon\n"})
    harness = AgentHarness(tmp_path / "agent")
    harness.store.put(
        library_key("files", "1.0"),
        library({"manifest.yml": (MANIFEST, 0o644), "run.sh": (SCRIPT, 0o755)}),
    )
    with git_daemon(served) as base:
        outcome = harness.run(
            context(
                spec("git", url=f"{base}/app"),
                spec("make_file"),
                sh("cat app/README by-library.txt; test ! -e " + str(harness.root / "objects")),
            ),
            sandbox=SANDBOX,
            libraries=[{"name": "files", "version": "1.0"}],
        )
    assert outcome.status == "Success", outcome.context_log + "".join(
        outcome.log(i)
        for i in range(3)
        if outcome.has_log(outcome.invocation.context.steps[i].uuid)
    )
    assert "library sees {" in outcome.log(1)
    assert "from the daemon" in outcome.log(2) and "made" in outcome.log(2)
    assert "sandbox: bubblewrap" in outcome.context_log
