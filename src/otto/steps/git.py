"""`git`: clone a repository into the workspace, never prompting.

Every clone borrows objects from a bare mirror of the same URL kept under
`<cache>/git/` (`--reference-if-able`, then `--dissociate`: the clone keeps
copies, so later steps need not see the mirror), refreshed with one fetch per
clone, so a second clone of a repository transfers almost nothing over the
network. Mirrors are locked while updated (several agents may share a cache).
git runs in the host sandbox; the git that writes a mirror runs with Otto's
own environment, never the step's, and sees that one mirror only.

`ref` (a commit SHA or tag) checks out that exact commit, detached; a SHA
that no branch or tag holds is fetched by itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import re
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from pydantic import JsonValue

from otto.isolation import Mounts
from otto.steps.manifest import StepCallError
from otto.steps.paths import check_relative, resolve_inside
from otto.steps.runtime import StepFailure, StepOutcome, StepRuntime

NEVER_PROMPT = {"GIT_TERMINAL_PROMPT": "0", "GCM_INTERACTIVE": "never"}


def check(params: dict[str, JsonValue]) -> None:
    depth = params.get("depth")
    if depth is not None and not (isinstance(depth, str) and depth.isdigit() and int(depth) > 0):
        raise StepCallError("`git` depth must be a positive number of commits")
    if params.get("into") is not None:
        check_relative(str(params["into"]), "`git` into")
    if not str(params["url"]).strip():
        raise StepCallError("`git` url must not be empty")


def run(rt: StepRuntime, params: dict[str, JsonValue]) -> StepOutcome:
    url = str(params["url"])
    into = str(params.get("into") or repo_name(url))
    dest = resolve_inside(rt.workspace, rt.cwd, into, "`into`")
    depth = params.get("depth")
    clone(
        rt,
        url,
        dest,
        branch=_opt(params.get("branch")),
        ref=_opt(params.get("ref")),
        depth=int(str(depth)) if depth else None,
    )
    return StepOutcome(0)


def repo_name(url: str) -> str:
    """`https://host/org/app.git` → `app`."""
    name = re.split(r"[/:]", url.rstrip("/"))[-1]
    name = name.removesuffix(".git")
    return name or "repository"


def clone(
    rt: StepRuntime,
    url: str,
    dest: Path,
    *,
    branch: str | None = None,
    ref: str | None = None,
    depth: int | None = None,
) -> None:
    """Clone `url` into `dest` (missing or empty), at `ref` when given; StepFailure if not."""
    env = git_env(rt.env)
    mirror = _update_mirror(rt, url)
    args = ["git", "clone"]
    if branch:
        args += ["--branch", branch]
    if depth:
        args += ["--depth", str(depth)]
    if ref:
        args.append("--no-checkout")
    if mirror is not None:
        # Borrowed objects are copied: the workspace must not need the mirror, which no
        # later step (nor a container) sees.
        args += ["--reference-if-able", str(mirror), "--dissociate"]
    reads = Mounts(readable=(mirror,) if mirror else ())
    _git(rt, [*args, "--", url, str(dest)], env, "clone", reads)
    if not ref:
        return
    if _run(rt, ["git", "-C", str(dest), "cat-file", "-e", f"{ref}^{{commit}}"], env) != 0:
        fetch = ["git", "-C", str(dest), "fetch"]
        if depth:
            fetch += ["--depth", str(depth)]
        _git(rt, [*fetch, "origin", ref], env, f"fetch {ref}")
        ref = "FETCH_HEAD"
    _git(
        rt,
        ["git", "-C", str(dest), "-c", "advice.detachedHead=false", "checkout", "--detach", ref],
        env,
        f"check out {ref}",
    )


def git_env(env: Mapping[str, str]) -> dict[str, str]:
    """The step's environment, made never to ask anyone for anything."""
    out = {**env, **NEVER_PROMPT}
    out.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return out


def mirror_path(cache_dir: Path, url: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]", "_", repo_name(url))[:40]
    return cache_dir / "git" / f"{slug}-{digest}.git"


def _update_mirror(rt: StepRuntime, url: str) -> Path | None:
    """Create or refresh the mirror of `url`; None (clone without it) if that fails.

    Mirrors are shared by every run on this machine, so a step's environment never
    reaches the git that writes one (no GIT_CONFIG_*, GIT_SSH_COMMAND, …: Otto's own
    `tool_env`), and that git sees only this URL's mirror, not the others'."""
    mirror = mirror_path(rt.cache_dir, url)
    mirror.parent.mkdir(parents=True, exist_ok=True)
    env = git_env(rt.tool_env)
    with _locked(rt, mirror.with_suffix(".lock")):
        if (mirror / "HEAD").exists():
            args = ["git", "-C", str(mirror), "fetch", "--prune", "--quiet", "origin"]
            rt.say("+ " + " ".join(args))
            code = _run(rt, args, env, Mounts(writable=(mirror,)), tool=True)
            if code == 0:
                return mirror
            rt.say(f"(mirror update failed with exit code {code}; cloning without it)")
            return None
        partial = mirror.with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        writes = Mounts(writable=(partial,))
        args = ["git", "clone", "--mirror", "--quiet", "--", url, str(partial)]
        rt.say("+ " + " ".join(args))
        if _run(rt, args, env, writes, tool=True) != 0:
            shutil.rmtree(partial, ignore_errors=True)
            rt.say("(no mirror of this repository; cloning without it)")
            return None
        _run(rt, ["git", "-C", str(partial), "config", "gc.auto", "0"], env, writes, tool=True)
        partial.rename(mirror)
        return mirror


@contextlib.contextmanager
def _locked(rt: StepRuntime, path: Path) -> Iterator[None]:
    with open(path, "a") as lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if rt.interrupted:
                    raise StepFailure("interrupted while waiting for the git mirror") from None
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(
    rt: StepRuntime,
    args: list[str],
    env: dict[str, str],
    mounts: Mounts | None = None,
    tool: bool = False,
) -> int:
    """git runs on this machine, in its sandbox even for a context with a container (the
    image need not have git); `tool`: with `env` alone, not over the step's."""
    return rt.run(args, env=env, host=True, mounts=mounts, replace_env=tool)


def _git(
    rt: StepRuntime, args: list[str], env: dict[str, str], what: str, mounts: Mounts | None = None
) -> None:
    rt.say("+ " + " ".join(args))
    code = _run(rt, args, env, mounts)
    if code != 0:
        raise StepFailure(f"git {what} failed (exit code {code})")


def _opt(value: JsonValue) -> str | None:
    return str(value) if value not in (None, "") else None
