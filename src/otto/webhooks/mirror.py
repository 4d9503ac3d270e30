"""Read a file at an exact commit from a cached bare mirror of the repository.

One bare repository per clone URL under `$OTTO_HOME/mirrors/`; each push
fetches just the pushed commit (`git fetch --depth 1 URL SHA`, falling back
to the pushed ref for servers that refuse a bare SHA), never prompting.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import threading
from pathlib import Path

GIT_TIMEOUT = 60.0
PREFETCH = 200  # commits per `git fetch` when many pushes are queued


class Unreachable(Exception):
    """The repository could not be fetched (worth retrying)."""


class NoSuchFile(Exception):
    """The commit has no such file."""


class Mirrors:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[Path, threading.Lock] = {}
        self._guard = threading.Lock()

    def read(self, url: str, sha: str, ref: str, path: str) -> str:
        """The text of `path` at `sha`; Unreachable or NoSuchFile otherwise."""
        mirror = self._path(url)
        with self._lock(mirror):
            if not (mirror / "HEAD").exists():
                mirror.parent.mkdir(parents=True, exist_ok=True)
                _git(["init", "--bare", "--quiet", str(mirror)])
            if not _has(mirror, sha):
                self._fetch(mirror, url, sha, ref)
            shown = _git(["-C", str(mirror), "show", f"{sha}:{path}"], check=False)
        if shown.returncode != 0:
            raise NoSuchFile(f"{path}: no such file in commit {sha}")
        try:
            return shown.stdout.decode("utf-8")
        except UnicodeDecodeError:
            raise NoSuchFile(f"{path}: not UTF-8 text in commit {sha}") from None

    def prefetch(self, url: str, shas: list[str]) -> None:
        """Fetch the commits of many queued pushes of one repository in one go (best
        effort: `read` fetches whatever is still missing, one by one)."""
        mirror = self._path(url)
        with self._lock(mirror):
            if not (mirror / "HEAD").exists():
                mirror.parent.mkdir(parents=True, exist_ok=True)
                _git(["init", "--bare", "--quiet", str(mirror)])
            missing = _missing(mirror, shas)
            for start in range(0, len(missing), PREFETCH):
                chunk = missing[start : start + PREFETCH]
                _git(["-C", str(mirror), "fetch", "--quiet", "--depth", "1", url, *chunk],
                     check=False)  # fmt: skip

    def _fetch(self, mirror: Path, url: str, sha: str, ref: str) -> None:
        first = _git(["-C", str(mirror), "fetch", "--quiet", "--depth", "1", url, sha], check=False)
        if first.returncode == 0 and _has(mirror, sha):
            return
        second = _git(
            ["-C", str(mirror), "fetch", "--quiet", "--depth", "1", url, f"+{ref}:{ref}"],
            check=False,
        )
        if second.returncode == 0 and _has(mirror, sha):
            return
        error = (second.stderr or first.stderr).decode(errors="replace").strip()
        where = without_credentials(url)
        raise Unreachable(f"cannot fetch {sha} from {where}: {error or 'git fetch failed'}")

    def _path(self, url: str) -> Path:
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        slug = re.sub(r"[^A-Za-z0-9._-]", "_", url.rstrip("/").rsplit("/", 1)[-1])[:40]
        return self.root / f"{slug}-{digest}.git"

    def _lock(self, mirror: Path) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(mirror, threading.Lock())


def _missing(mirror: Path, shas: list[str]) -> list[str]:
    """Which of `shas` the mirror has no commit of."""
    unique = list(dict.fromkeys(shas))
    if not unique:
        return []
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    done = subprocess.run(
        ["git", "-C", str(mirror), "cat-file", "--batch-check"],
        input="".join(f"{sha}^{{commit}}\n" for sha in unique).encode(),
        capture_output=True, env=env, timeout=GIT_TIMEOUT, check=False,
    )  # fmt: skip
    answers = done.stdout.decode(errors="replace").splitlines()
    if done.returncode != 0 or len(answers) != len(unique):
        return unique
    return [sha for sha, answer in zip(unique, answers, strict=True) if answer.endswith("missing")]


def _has(mirror: Path, sha: str) -> bool:
    args = ["-C", str(mirror), "cat-file", "-e", f"{sha}^{{commit}}"]
    return _git(args, check=False).returncode == 0


def _git(args: list[str], check: bool = True) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}
    env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, env=env, timeout=GIT_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired:
        raise Unreachable(f"git {args[0]} timed out after {GIT_TIMEOUT:.0f} s") from None
    if check and done.returncode != 0:
        raise Unreachable(done.stderr.decode(errors="replace").strip())
    return done


def without_credentials(url: str) -> str:
    """A URL without the credentials it may carry."""
    return re.sub(r"//[^/@]*@", "//", url)
