"""Where `otto run`'s workspaces start: the directory it runs in, as a commit to check out.

In a git repository, the commit is HEAD plus every uncommitted change — staged or
not, untracked files too, but nothing `.gitignore` ignores — written with an index
of its own, as `git stash create` does: the repository's branches, index and
working tree stay as they were (only objects are added to it). Elsewhere, the
directory's files are committed to a scratch repository. Either way the agent
checks the commit out as it checks out a pushed one (`otto.model.Checkout`,
a local clone).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from otto.client.errors import ClientError, UsageProblem
from otto.model import Checkout

# The snapshot is a throw-away commit: it never needs the user's git identity.
_IDENTITY = {
    "GIT_AUTHOR_NAME": "otto run",
    "GIT_AUTHOR_EMAIL": "otto@localhost",
    "GIT_COMMITTER_NAME": "otto run",
    "GIT_COMMITTER_EMAIL": "otto@localhost",
}
MESSAGE = "otto run: the working tree as it is"


def snapshot(directory: Path, home: Path) -> Checkout:
    """A commit of `directory` as it is now. `home`, the run's state, is left out of it
    and holds the scratch repository of a directory outside git."""
    if shutil.which("git") is None:
        raise UsageProblem("otto run copies this directory with git, which is missing (--clean)")
    directory, home = directory.absolute(), home.absolute()
    top = _toplevel(directory)
    if top is not None:
        return Checkout(url=str(top), sha=_commit_working_tree(top, _leave_out(top, home)))
    return _commit_directory(directory, home / "workspace-source", _leave_out(directory, home))


def _leave_out(directory: Path, home: Path) -> list[str]:
    """The pathspec of everything under `directory`, but `home` when it is inside."""
    if home.is_relative_to(directory) and home != directory:
        return [".", f":(exclude){home.relative_to(directory)}"]
    return ["."]


def _toplevel(directory: Path) -> Path | None:
    found = _git(directory, "rev-parse", "--show-toplevel", check=False)
    return Path(found) if found else None


def _commit_working_tree(top: Path, pathspec: list[str]) -> str:
    """HEAD plus the working tree's changes, as a commit whose parent is HEAD."""
    with tempfile.TemporaryDirectory(prefix="otto-index-") as tmp:
        index = Path(tmp) / "index"
        real = top / _git(top, "rev-parse", "--git-path", "index")
        if real.is_file():  # start from the real index: unchanged files need no hashing
            shutil.copyfile(real, index)
        env = {"GIT_INDEX_FILE": str(index)}
        _git(top, "add", "--all", "--", *pathspec, env=env)
        tree = _git(top, "write-tree", env=env)
    head = _git(top, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False)
    if head and _git(top, "rev-parse", "HEAD^{tree}") == tree:
        return head
    parent = ["-p", head] if head else []
    return _git(top, "commit-tree", tree, *parent, "-m", MESSAGE, env=_IDENTITY)


def _commit_directory(directory: Path, scratch: Path, pathspec: list[str]) -> Checkout:
    """The files of a directory outside git, committed to a scratch repository."""
    if scratch.exists():
        shutil.rmtree(scratch)
    scratch.mkdir(parents=True)
    repo = scratch / "source.git"
    _git(scratch, "init", "--quiet", "--bare", str(repo))
    env = {
        "GIT_DIR": str(repo),
        "GIT_WORK_TREE": str(directory),
        "GIT_INDEX_FILE": str(scratch / "index"),
    }
    _git(directory, "add", "--all", "--", *pathspec, env=env)
    tree = _git(directory, "write-tree", env=env)
    commit = _git(directory, "commit-tree", tree, "-m", MESSAGE, env={**env, **_IDENTITY})
    _git(directory, "update-ref", "refs/heads/main", commit, env=env)
    return Checkout(url=str(repo), sha=commit)


def _git(where: Path, *args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=where,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        if not check:
            return ""
        message = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise ClientError(f"cannot copy {where} into the workspace: git {args[0]}: {message[0]}")
    return done.stdout.strip()
