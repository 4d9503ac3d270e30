"""User step libraries: a step as a separate executable, in any language.

A library is a `.tar.gz` of `manifest.yml` and its files, stored at
`step-libraries/<name>/<version>.tar.gz`. Its manifest names the step
(`symbol`), its parameters and its `entrypoint`, a path inside the library.
An invocation lists the libraries its pipeline uses; their symbols are then
called like any standard step (one may not shadow a standard step).

The agent fetches a library once per content (cached under
`<cache>/step-libraries/<name>/<version>/<sha256>/`), unpacks it safely,
checks the manifest and the entrypoint, then runs the entrypoint with one
argument: the path of a JSON file

    {"configuration": {"pipeline", "context", "step", "workspace", "cache_dir",
                       "control_socket", "control_token", "object_store"},
     "parameters": {...}}      # keyword form, bound by the manifest
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pydantic import JsonValue

from otto.isolation import Mounts
from otto.objectstore import ObjectNotFound, ObjectStore
from otto.steps.manifest import BUILTIN, Manifest, ManifestError, load_manifest
from otto.steps.runtime import StepOutcome, StepRuntime
from otto.steps.safetar import UnsafeArchive, safe_extract


class LibraryError(ValueError):
    """A step library that is missing or not fit to run; `missing` when it is not stored."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True)
class StepLibrary:
    name: str
    version: str
    root: Path
    manifest: Manifest

    @property
    def entrypoint(self) -> Path:
        return self.root / self.manifest.entrypoint


def library_key(name: str, version: str) -> str:
    return f"step-libraries/{name}/{version}.tar.gz"


def fetch_library(store: ObjectStore, name: str, version: str, cache_dir: Path) -> StepLibrary:
    """The library, from the cache or fetched and checked; LibraryError if unusable."""
    key = library_key(name, version)
    try:
        info = store.head(key)
    except ObjectNotFound:
        raise LibraryError(f"no step library {name} {version} ({key})", missing=True) from None
    home = cache_dir / "step-libraries" / name / version
    home.mkdir(parents=True, exist_ok=True)
    if info.sha256:
        root = home / info.sha256
        if (root / "manifest.yml").is_file():
            return _checked(name, version, root)
    with tempfile.TemporaryDirectory(dir=home, prefix=".fetch-") as tmp:
        archive = Path(tmp, "library.tar.gz")
        digest = hashlib.sha256()
        with store.open(key) as stream, open(archive, "wb") as f:
            for chunk in stream:
                digest.update(chunk)
                f.write(chunk)
        sha = digest.hexdigest()
        if info.sha256 and sha != info.sha256:
            raise LibraryError(f"step library {name} {version}: checksum mismatch")
        unpacked = Path(tmp, "lib")
        try:
            safe_extract(archive, unpacked)
        except UnsafeArchive as exc:
            raise LibraryError(f"step library {name} {version}: {exc}") from None
        library = _checked(name, version, unpacked)
        root = home / sha
        try:
            unpacked.rename(root)
        except OSError:  # another agent cached the same content meanwhile
            if not (root / "manifest.yml").is_file():
                raise
    return StepLibrary(name, version, root, library.manifest)


def _checked(name: str, version: str, root: Path) -> StepLibrary:
    where = f"step library {name} {version}"
    try:
        manifest = load_manifest(root / "manifest.yml")
    except (ManifestError, OSError) as exc:
        raise LibraryError(f"{where}: {exc}") from None
    entry = manifest.entrypoint
    if entry == BUILTIN or os.path.isabs(entry):
        raise LibraryError(f"{where}: entrypoint must be a file of the library")
    path = (root / entry).resolve()
    if not path.is_relative_to(root.resolve()) or not path.is_file():
        raise LibraryError(f"{where}: entrypoint `{entry}` is not a file of the library")
    if not os.access(path, os.X_OK):
        raise LibraryError(f"{where}: entrypoint `{entry}` is not executable")
    return StepLibrary(name, version, root, manifest)


def data_dir_of(cache_dir: Path, library: StepLibrary) -> Path:
    """Where a library keeps data between runs (its `cache_dir`): its own, no other's."""
    return cache_dir / "step-data" / library.name


def run_library_step(
    rt: StepRuntime, library: StepLibrary, params: dict[str, JsonValue]
) -> StepOutcome:
    step = rt.step
    step_id = step.uuid if step else "step"
    data_dir = data_dir_of(rt.cache_dir, library)
    data_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "configuration": {
            "pipeline": rt.pipeline,
            "context": rt.context,
            "step": step_id,
            "workspace": str(rt.workspace),
            "cache_dir": str(data_dir),
            "control_socket": rt.control_socket,
            "control_token": rt.control_token,
            "object_store": rt.object_store_url,
        },
        "parameters": {k: v for k, v in params.items() if k != "timeout"},
    }
    path = rt.private_dir / f"invocation-{step_id}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(document, f)
    rt.say(f"+ {library.manifest.symbol} (step library {library.name} {library.version})")
    try:
        sees = Mounts(writable=(data_dir,), readable=(library.root, path.parent))
        return StepOutcome(rt.run([str(library.entrypoint), str(path)], mounts=sees))
    finally:
        path.unlink(missing_ok=True)
