"""`cache-restore` and `cache-save`: workspace subtrees kept across runs of a project.

The parser inserts these steps for a stage's `cache { … }` block: one `cache-restore`
per `use NAME` before the stage's own steps, one `cache-save` per `NAME = ['path/', …]`
after them (so a save only runs once the steps before it have succeeded). Users
cannot write them (a step name has no `-`).

A cache is a tar.gz in the object store at
`caches/<project>/<branch>/<name>/<content-key>` (`otto.objectstore.keys.cache_key`):
the content key is a hash of the `key` files' contents, or `nokey` without them. A
cache with a given key is immutable: a save finds it there and keeps it. Restoring
reads the run's branch's cache, else the default branch's; a miss is said, not an
error. Each restore also touches `<archive key>.used`, which housekeeping reads to drop
the least recently used caches first.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from pydantic import JsonValue

from otto.objectstore import ObjectNotFound, ObjectStore
from otto.objectstore.keys import cache_key, cache_used_key
from otto.steps.manifest import StepCallError
from otto.steps.runtime import StepFailure, StepOutcome, StepRuntime
from otto.steps.safetar import UnsafeArchive

CACHE_TYPE = "application/vnd.otto.cache+gzip"
NO_KEY = "nokey"
# Which run the cache belongs to: run variables (`otto.psm.records.run_variables`).
PROJECT, BRANCH, DEFAULT_BRANCH = "OTTO_PROJECT", "OTTO_BRANCH", "OTTO_DEFAULT_BRANCH"
NONE = "_"  # the project or branch of a run that has none (a plain API run)
# GNU tar on the agent's host, compressing with gzip's fastest level: several times
# faster than the default level 6 and near it in size.
TAR = ("tar", "--use-compress-program=gzip -1")


def lines(value: JsonValue) -> list[str]:
    """A newline-separated parameter (paths, key files) as a list."""
    return [line for line in str(value or "").split("\n") if line]


def check_paths(paths: list[str]) -> None:
    """Refuse a path that is absolute or leaves the workspace, before the run."""
    for path in paths:
        normal = os.path.normpath(path)
        if os.path.isabs(path) or normal == ".." or normal.startswith("../") or "\0" in path:
            raise StepCallError(f"cache path `{path}` must stay inside the workspace")


def check_save(params: dict[str, JsonValue]) -> None:
    check_paths(lines(params["paths"]))
    check_paths(lines(params.get("key")))


def check_restore(params: dict[str, JsonValue]) -> None:
    check_paths(lines(params.get("key")))


def restore(rt: StepRuntime, params: dict[str, JsonValue]) -> StepOutcome:
    name = str(params["name"])
    content = content_key(rt.workspace, lines(params.get("key")))
    started = time.monotonic()
    for branch in _branches(rt):
        key = cache_key(_project(rt), branch, name, content)
        with contextlib.suppress(ObjectNotFound):
            size = _unpack(rt, key, name)
            with contextlib.suppress(OSError):
                rt.store.put(cache_used_key(key), b"")
            took = time.monotonic() - started
            rt.say(f"cache {name}: restored {_mb(size)} in {took:.1f} s (from {branch})")
            return StepOutcome(0)
    rt.say(f"cache {name}: no cache yet (a miss; the stage runs without it)")
    return StepOutcome(0)


def save(rt: StepRuntime, params: dict[str, JsonValue]) -> StepOutcome:
    name = str(params["name"])
    paths = lines(params["paths"])
    key = cache_key(
        _project(rt), _branch(rt), name, content_key(rt.workspace, lines(params.get("key")))
    )
    if _exists(rt.store, key):
        rt.say(f"cache {name}: kept (this key is saved already; a cache is immutable)")
        return StepOutcome(0)
    started = time.monotonic()
    root = rt.workspace.resolve()
    present = [p for p in paths if os.path.lexists(root / p)]
    for path in present:
        check_tree(root, path)
    if not present:
        rt.say(f"cache {name}: nothing to save (none of {', '.join(paths)} exists)")
        return StepOutcome(0)
    with tempfile.TemporaryFile(dir=rt.private_dir) as tmp:
        pack(tmp, root, present)
        tmp.seek(0)
        # A concurrent save may have stored it meanwhile: keep that one. The stores have no
        # put-if-absent; in the narrow window left both put, and as each put is an atomic
        # replace of a whole archive of the same key, one whole cache stays either way.
        if _exists(rt.store, key):
            rt.say(f"cache {name}: kept (another run saved this key first)")
            return StepOutcome(0)
        info = rt.store.put(key, tmp, CACHE_TYPE)
    took = time.monotonic() - started
    rt.say(f"cache {name}: saved {_mb(info.size)} in {took:.1f} s ({', '.join(present)})")
    return StepOutcome(0)


def content_key(workspace: Path, files: list[str]) -> str:
    """The hash of the `key` files' contents (a missing one counts as empty), or `nokey`."""
    if not files:
        return NO_KEY
    digest = hashlib.sha256()
    root = workspace.resolve()
    for name in files:
        digest.update(name.encode() + b"\0")
        path = root / name
        if path.is_file() and path.resolve().is_relative_to(root):
            with open(path, "rb") as f:
                digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:32]


def check_tree(root: Path, path: str) -> None:
    """Refuse `path`, or a symlink below it, that leads out of the workspace."""
    full = root / path
    if not full.resolve().is_relative_to(root):
        raise StepFailure(f"cache path `{path}` leads outside the workspace")
    for top, dirs, files in os.walk(full):
        for entry in (*dirs, *files):
            link = Path(top, entry)
            if link.is_symlink() and not link.resolve().is_relative_to(root):
                shown = os.path.relpath(link, root)
                raise StepFailure(
                    f"cache path `{shown}` is a symlink pointing outside the workspace"
                )


def pack(out: BinaryIO, root: Path, paths: list[str]) -> None:
    """A tar.gz of `paths` (relative to `root`) written to `out`, symlinks kept as links:
    GNU tar with `gzip -1`, which is several times faster than Python's tarfile."""
    argv = [*TAR, "-cf", "-", "-C", str(root), "--", *(os.path.normpath(p) for p in paths)]
    done = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, check=False)
    if done.returncode != 0:
        raise StepFailure(f"cannot archive the cache: {_said(done.stderr)}")


def unpack(chunks: Iterable[bytes], workspace: Path) -> int:
    """Unpack a tar.gz (its bytes as they come) into `workspace`; its size.

    GNU tar unpacks into an empty directory of the workspace (it refuses members with
    `..` or absolute names itself); every symlink there must point inside it; then each
    entry is moved into place (a directory already there is merged into, never followed
    if it is a symlink: that is replaced)."""
    root = workspace.resolve()
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".otto-cache-"))
    try:
        size = _untar(chunks, staging)
        _check_links(staging)
        _merge(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return size


def _untar(chunks: Iterable[bytes], into: Path) -> int:
    argv = [*TAR, "-xf", "-", "-C", str(into), "--no-same-owner", "--no-same-permissions"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    size = 0
    try:
        for chunk in chunks:
            proc.stdin.write(chunk)
            size += len(chunk)
    except BrokenPipeError:
        pass  # tar stopped early: its exit code says why
    finally:
        proc.stdin.close()
        errors = proc.stderr.read()
        proc.wait()
    if proc.returncode != 0:
        raise UnsafeArchive(f"cannot unpack: {_said(errors)}")
    return size


def _check_links(staging: Path) -> None:
    for top, dirs, files in os.walk(staging):
        for entry in (*dirs, *files):
            path = Path(top, entry)
            if path.is_symlink() and not path.resolve().is_relative_to(staging):
                shown = path.relative_to(staging)
                raise UnsafeArchive(f"symlink `{shown}` points out of the workspace")


def _merge(source: Path, target: Path) -> None:
    for entry in os.scandir(source):
        there = target / entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if there.is_symlink():
            there.unlink()  # replaced, never followed
        elif is_dir and there.is_dir():
            _merge(Path(entry.path), there)
            continue
        elif there.is_dir():
            shutil.rmtree(there)
        elif is_dir and there.exists():
            there.unlink()
        os.replace(entry.path, there)


def _said(stderr: bytes) -> str:
    return stderr.decode(errors="replace").strip().splitlines()[-1] if stderr.strip() else "?"


def _unpack(rt: StepRuntime, key: str, name: str) -> int:
    try:
        with rt.store.open(key) as stream:
            return unpack(stream, rt.workspace)
    except UnsafeArchive as exc:
        raise StepFailure(f"cache {name} refused: {exc}") from None
    except OSError as exc:
        raise StepFailure(
            f"cache {name}: cannot restore: {exc.strerror} ({exc.filename})"
        ) from None


def _exists(store: ObjectStore, key: str) -> bool:
    try:
        store.head(key)
    except ObjectNotFound:
        return False
    return True


def _project(rt: StepRuntime) -> str:
    return rt.env.get(PROJECT) or NONE


def _branch(rt: StepRuntime) -> str:
    return rt.env.get(BRANCH) or NONE


def _branches(rt: StepRuntime) -> list[str]:
    own, default = _branch(rt), rt.env.get(DEFAULT_BRANCH)
    return [own, default] if default and default != own else [own]


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
