"""Read a file at an exact commit from a cached bare mirror of the repository.

One bare repository per clone URL under `$OTTO_HOME/mirrors/`; each push
fetches just the pushed commit (`git fetch --depth 1 URL SHA`, falling back
to the pushed ref for servers that refuse a bare SHA), never prompting, and never
for longer than the mirror's `timeout` (a server that accepts and never answers).

Each error's first line says what failed for people (a commit status shows it); the
lines after it, git's own words, are for the server's users.
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
    """The commit could not be fetched: worth retrying, unless it is a NoSuchCommit."""


class NoSuchCommit(Unreachable):
    """The repository answered, without the commit (`not our ref`): retrying cannot help."""


class NoSuchFile(Exception):
    """The commit has no such file."""


# What git says when the repository answered but has no such commit (or ref).
NO_SUCH_COMMIT = re.compile(
    r"not our ref|unadvertised object|couldn't find remote ref|no such remote ref"
    r"|bad object|invalid object|no such commit",
    re.IGNORECASE,
)


class NoSuchRef(Exception):
    """The repository has no such branch or tag."""


class Mirrors:
    def __init__(self, root: Path, timeout: float = GIT_TIMEOUT) -> None:
        self.root = root
        self.timeout = timeout  # seconds a fetch may take
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
            raise NoSuchFile(f"{path} not found at {sha}")
        try:
            return shown.stdout.decode("utf-8")
        except UnicodeDecodeError:
            raise NoSuchFile(f"{path} is not UTF-8 text at {sha}") from None

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
                     check=False, timeout=self.timeout)  # fmt: skip

    def resolve(self, url: str, ref: str) -> tuple[str, str]:
        """The full name and commit of `ref` (`main`, `v1.0`, `refs/heads/main`) in the
        repository at `url`, asked with `git ls-remote`: a branch before a tag of the same
        name. NoSuchRef when it names neither; Unreachable when the repository cannot be read."""
        wanted = [ref] if ref.startswith("refs/") else [f"refs/heads/{ref}", f"refs/tags/{ref}"]
        patterns = [*wanted, *(f"{name}^{{}}" for name in wanted)]
        listed = _git(["ls-remote", "--", url, *patterns]).stdout.decode(errors="replace")
        found: dict[str, str] = {}
        for line in listed.splitlines():
            sha, _, name = line.partition("\t")
            found[name] = sha
        for name in wanted:
            if name in found:  # an annotated tag: the commit it points to (`^{}`)
                return name, found.get(f"{name}^{{}}", found[name])
        raise NoSuchRef(f"no branch or tag {ref!r} in {without_credentials(url)}")

    def fetch(self, url: str, sha: str, ref: str | None = None) -> None:
        """Have commit `sha` (of `ref`, when known) in the mirror, fetched when missing;
        Unreachable when the repository cannot be read or does not have it."""
        mirror = self._path(url)
        with self._lock(mirror):
            if not (mirror / "HEAD").exists():
                mirror.parent.mkdir(parents=True, exist_ok=True)
                _git(["init", "--bare", "--quiet", str(mirror)])
            if _has(mirror, sha):
                return
            if ref:
                self._fetch(mirror, url, sha, ref)
                return
            _git(["-C", str(mirror), "fetch", "--quiet", "--depth", "1", url, sha], check=False)
            if not _has(mirror, sha):
                raise Unreachable(f"no commit {sha} in {without_credentials(url)}")

    def _fetch(self, mirror: Path, url: str, sha: str, ref: str) -> None:
        """Fetch `sha` (or else `ref`, if any, expected to hold it): NoSuchCommit when the
        repository answered without it, Unreachable when it did not answer."""
        where = without_credentials(url)
        fetch = ["-C", str(mirror), "fetch", "--quiet", "--depth", "1", url]
        try:
            first = _git([*fetch, sha], check=False, timeout=self.timeout)
            if first.returncode == 0 and _has(mirror, sha):
                return
            second = (
                _git([*fetch, f"+{ref}:{ref}"], check=False, timeout=self.timeout) if ref else first
            )
        except Unreachable as exc:
            raise Unreachable(f"cannot fetch commit {sha}: no answer\n{where}: {exc}") from None
        if second.returncode == 0 and _has(mirror, sha):
            return
        said = first.stderr.decode(errors="replace").strip()
        error = second.stderr.decode(errors="replace").strip() or said or "git fetch failed"
        if second.returncode == 0 or NO_SUCH_COMMIT.search(said):
            message = f"commit {sha} not found in the repository\n{where}: {error}"
            raise NoSuchCommit(message)
        raise Unreachable(
            f"cannot fetch commit {sha}: the repository is unreachable\n{where}: {error}"
        )

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


def _git(
    args: list[str], check: bool = True, timeout: float = GIT_TIMEOUT
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "SSH_ASKPASS": "true"}
    env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, env=env, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        command = args[2] if args[0] == "-C" else args[0]
        raise Unreachable(f"git {command} timed out after {timeout:g} s") from None
    if check and done.returncode != 0:
        raise Unreachable(done.stderr.decode(errors="replace").strip())
    return done


def without_credentials(url: str) -> str:
    """A URL without the credentials it may carry."""
    return re.sub(r"//[^/@]*@", "//", url)
