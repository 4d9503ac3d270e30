"""`archive` and `unarchive`: artifacts of a run, stored under `<pipeline>/artifacts/`.

One file is stored as it is, under `<name>` (default: the file's name);
several files, a glob or a directory go into `<name>.tar.gz`, a tar.gz whose
members are relative to the step's directory, so `unarchive` in the same
directory of another context recreates the same paths. A symlink that points
out of the workspace is refused; links inside it are stored as relative
links, or followed with `followSymlinks: 'true'`.

`unarchive` unpacks a tar.gz artifact into the step's directory (safely: see
`otto.steps.safetar`) or writes a one-file artifact there under its name.
"""

from __future__ import annotations

import contextlib
import glob
import mimetypes
import os
import re
import tarfile
import tempfile
from pathlib import Path

from pydantic import JsonValue

from otto.objectstore import ObjectNotFound, ObjectStore
from otto.steps.manifest import StepCallError
from otto.steps.paths import check_relative
from otto.steps.runtime import StepFailure, StepOutcome, StepRuntime
from otto.steps.safetar import UnsafeArchive, safe_extract

BUNDLE_TYPE = "application/vnd.otto.artifact+gzip"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,199}")


def artifact_key(pipeline: str, name: str) -> str:
    """Where a one-file artifact is stored."""
    return f"{pipeline}/artifacts/{name}"


def bundle_key(pipeline: str, name: str) -> str:
    """Where a several-file (tar.gz) artifact is stored."""
    return f"{pipeline}/artifacts/{name}.tar.gz"


def check_archive(params: dict[str, JsonValue]) -> None:
    check_relative(str(params["artifacts"]), "`archive` artifacts")
    if params.get("name") is not None:
        _check_name(str(params["name"]), StepCallError)


def check_unarchive(params: dict[str, JsonValue]) -> None:
    _check_name(str(params["name"]), StepCallError)


def archive(rt: StepRuntime, params: dict[str, JsonValue]) -> StepOutcome:
    pattern = str(params["artifacts"])
    follow = str(params.get("followSymlinks")).lower() == "true"
    root = rt.workspace.resolve()
    cwd = rt.cwd.resolve()
    matches = _expand(cwd, pattern)
    for match in matches:
        _check_tree(root, cwd / match, match, follow)
    name = str(params["name"]) if params.get("name") else None
    single = cwd / matches[0]
    if len(matches) == 1 and single.is_file():
        name = name or single.name
        _check_name(name, StepFailure)
        with open(single, "rb") as f:
            info = rt.store.put(artifact_key(rt.pipeline, name), f, _content_type(name))
        _forget(rt.store, bundle_key(rt.pipeline, name))
        rt.say(f"stored {matches[0]} as artifact `{name}` ({info.size} bytes)")
        return StepOutcome(0)
    if name is None:
        if len(matches) != 1:
            raise StepFailure(f"`{pattern}` matches {len(matches)} paths: give the artifact a name")
        name = single.name
    _check_name(name, StepFailure)
    with tempfile.TemporaryFile(dir=rt.private_dir) as tmp:
        count = _bundle(tmp, cwd, matches, follow)
        tmp.seek(0)
        info = rt.store.put(bundle_key(rt.pipeline, name), tmp, BUNDLE_TYPE)
    _forget(rt.store, artifact_key(rt.pipeline, name))
    rt.say(f"stored {count} entries as artifact `{name}` ({info.size} bytes, tar.gz)")
    return StepOutcome(0)


def unarchive(rt: StepRuntime, params: dict[str, JsonValue]) -> StepOutcome:
    name = str(params["name"])
    _check_name(name, StepFailure)
    cwd = rt.cwd.resolve()
    try:
        bundle = rt.store.head(bundle_key(rt.pipeline, name)).content_type == BUNDLE_TYPE
    except ObjectNotFound:
        bundle = False
    if bundle:
        with tempfile.TemporaryFile(dir=rt.private_dir) as tmp:
            _download(rt.store, bundle_key(rt.pipeline, name), tmp)
            tmp.seek(0)
            try:
                members = safe_extract(tmp, cwd)  # type: ignore[arg-type]
            except UnsafeArchive as exc:
                raise StepFailure(f"artifact `{name}` refused: {exc}") from None
        rt.say(f"unpacked artifact `{name}`: {len(members)} entries")
        return StepOutcome(0)
    key = artifact_key(rt.pipeline, name)
    try:
        rt.store.head(key)
    except ObjectNotFound:
        raise StepFailure(f"no artifact `{name}` in this pipeline") from None
    target = cwd / name
    fd, partial = tempfile.mkstemp(dir=cwd, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            size = _download(rt.store, key, f)
        if target.is_symlink():
            target.unlink()
        os.replace(partial, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    rt.say(f"fetched artifact `{name}` ({size} bytes)")
    return StepOutcome(0)


def _expand(cwd: Path, pattern: str) -> list[str]:
    if os.path.isabs(pattern) or "\0" in pattern:
        raise StepFailure(f"artifacts `{pattern}` must be relative to the workspace")
    if _above(pattern):
        raise StepFailure(f"`{pattern}` is outside the step's directory")
    if glob.has_magic(pattern):
        found = sorted(glob.glob(pattern, root_dir=cwd, recursive=True))
        if not found:
            raise StepFailure(f"no file matches `{pattern}`")
    elif os.path.lexists(cwd / pattern):
        found = [pattern]
    else:
        raise StepFailure(f"`{pattern}` does not exist")
    matches: list[str] = []
    for match in found:
        normal = os.path.normpath(match)
        if _above(normal):
            raise StepFailure(f"`{match}` is outside the step's directory")
        if not any(normal == m or normal.startswith(f"{m}/") or m == "." for m in matches):
            matches.append(normal)
    return matches


def _above(path: str) -> bool:
    normal = os.path.normpath(path)
    return normal == ".." or normal.startswith("../")


def _check_tree(root: Path, path: Path, shown: str, follow: bool) -> None:
    """Refuse `path`, or anything below it, that leads out of the workspace."""
    if not path.resolve().is_relative_to(root):
        kind = "a symlink pointing" if path.is_symlink() else "a path leading"
        raise StepFailure(f"`{shown}` is {kind} outside the workspace")
    if not path.is_dir() or (path.is_symlink() and not follow):
        return
    seen: set[str] = set()
    for top, dirs, files in os.walk(path, followlinks=follow):
        seen.add(os.path.realpath(top))
        dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(top, d)) not in seen]
        for entry in (*dirs, *files):
            full = Path(top, entry)
            if full.is_symlink() and not full.resolve().is_relative_to(root):
                rel = os.path.relpath(full, path.parent)
                raise StepFailure(f"`{rel}` is a symlink pointing outside the workspace")


def _bundle(out: object, cwd: Path, matches: list[str], follow: bool) -> int:
    count = 0
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=6) as tar:  # type: ignore[call-overload]

        def add(path: Path, arcname: str, seen: frozenset[Path]) -> None:
            nonlocal count
            real = path.resolve()
            if path.is_symlink() and not follow:
                info = tar.gettarinfo(str(path), arcname)
                info.linkname = os.path.relpath(real, path.parent.resolve())
                tar.addfile(info)
                count += 1
                return
            if real.is_dir():
                if real in seen:
                    raise StepFailure(f"`{arcname}` is a symlink loop")
                if arcname != ".":
                    tar.add(str(real), arcname, recursive=False)
                    count += 1
                for child in sorted(real.iterdir()):
                    child_arc = child.name if arcname == "." else f"{arcname}/{child.name}"
                    add(path / child.name, child_arc, seen | {real})
            elif real.is_file():
                tar.add(str(real), arcname, recursive=False)
                count += 1

        for match in matches:
            add(cwd / match, match, frozenset())
    return count


def _download(store: ObjectStore, key: str, out: object) -> int:
    size = 0
    with store.open(key) as stream:
        for chunk in stream:
            out.write(chunk)  # type: ignore[attr-defined]
            size += len(chunk)
    return size


def _forget(store: ObjectStore, key: str) -> None:
    with contextlib.suppress(ObjectNotFound):
        store.delete(key)


def _content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _check_name(name: str, error: type[Exception]) -> None:
    if not NAME.fullmatch(name) or ".." in name:
        raise error(f"artifact name `{name}` must be letters, digits, `.`, `_`, `+` or `-`")
