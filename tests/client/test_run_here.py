"""`otto run` runs here: its workspace is a copy of the directory it runs in, and it
says what matters (every step's log with -v, every transition with --events)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from clientkit import otto

LOOK = "pipeline {{ stage {{ name = 'Look' steps {{ sh '{script}' }} }} }}\n"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_in_a_git_repository_the_workspace_is_head_plus_the_changes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "tracked").write_text("committed\n")
    (repo / "gone").write_text("deleted later\n")
    script = (
        'test "$(cat tracked)" = changed && test "$(cat staged)" = staged'
        " && test -f untracked && test ! -e build.log && test ! -e gone"
        " && git log --format=%s | grep -qx first"
    )
    (repo / "Ottofile").write_text(LOOK.format(script=script))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    (repo / "tracked").write_text("changed\n")
    (repo / "staged").write_text("staged\n")
    git(repo, "add", "staged")
    (repo / "untracked").write_text("new\n")
    (repo / "build.log").write_text("ignored\n")
    (repo / "gone").unlink()
    before = (git(repo, "status", "--porcelain"), git(repo, "rev-parse", "HEAD"))

    done = otto("run", cwd=repo)
    assert done.returncode == 0, done.stdout + done.stderr
    # The user's repository is as it was: branches, index, working tree, no stash.
    assert (git(repo, "status", "--porcelain"), git(repo, "rev-parse", "HEAD")) == before
    assert git(repo, "stash", "list") == ""
    assert (repo / "tracked").read_text() == "changed\n"


def test_outside_git_the_workspace_is_a_copy_and_clean_is_empty(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("hello from here\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.txt").write_text("deep\n")
    (tmp_path / "Ottofile").write_text(LOOK.format(script="cat data.txt sub/deep.txt"))
    done = otto("run", "-v", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hello from here\ndeep\n" in done.stdout

    clean = otto("run", "--clean", cwd=tmp_path)
    assert clean.returncode == 1, clean.stdout + clean.stderr
    assert "No such file or directory" in clean.stdout  # the failing step's log


def test_a_run_with_its_state_inside_the_directory_leaves_the_state_out(tmp_path: Path) -> None:
    (tmp_path / "Ottofile").write_text(LOOK.format(script="test ! -e state && ls"))
    done = otto("run", "--home", str(tmp_path / "state"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_without_a_terminal_a_line_per_outcome_and_failure(tmp_path: Path) -> None:
    (tmp_path / "Ottofile").write_text(
        """pipeline {
            stage { name = 'Fine' steps { sh 'echo fine-output' } }
            stage { name = 'Broken' steps { sh 'echo broken-output; exit 5' } }
        }"""
    )
    done = otto("run", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].endswith(": 2 batches, 2 contexts")
    said = [line.split("] ", 1)[1] for line in lines if line.startswith("[+")]
    assert [s.split(" in ")[0] for s in said] == [
        "✓ Fine: Success",
        "✗ Broken › 1. sh 'echo broken-output; exit 5': Failed (exit 5)",
        "✗ Broken: Failed",
    ]
    assert "broken-output" in done.stdout and "fine-output" not in done.stdout

    verbose = otto("run", "--verbose", cwd=tmp_path)
    assert "fine-output" in verbose.stdout and "broken-output" in verbose.stdout

    events = otto("run", "--events", cwd=tmp_path)
    assert "● Fine: Running on local (attempt 1)" in events.stdout
    assert "batch 1/2 Linear: AuctionStarted" in events.stdout
