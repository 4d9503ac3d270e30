"""Workspace directories on this machine: `<root>/<pipeline>/…`, one per run.

Used where the workspaces are: the server's janitor for its own orchestrator's, and a
remote orchestrator for its own (`WorkspaceSweeper`, which asks the server which of
its runs the retention policy lets go: `POST /v1/gc/workspaces`).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import uuid as uuidlib
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger("otto.housekeeping")
ASK_AT_ONCE = 1000  # pipelines per question to the server


def run_dirs(root: Path) -> dict[str, Path]:
    """The run directories under `root`, by pipeline uuid (`.cache` and the like skipped)."""
    found: dict[str, Path] = {}
    try:
        entries = list(os.scandir(root))
    except OSError:
        return found
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and _is_uuid(entry.name):
            found[entry.name] = Path(entry.path)
    return found


def _is_uuid(name: str) -> bool:
    try:
        return str(uuidlib.UUID(name)) == name
    except ValueError:
        return False


def tree_bytes(path: Path) -> int:
    """The bytes of the files under `path` (links not followed)."""
    return sum(size for size in _sizes(path))


def _sizes(path: Path) -> Iterator[int]:
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _sizes(Path(entry.path))
            else:
                yield entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue  # removed meanwhile


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class WorkspaceSweeper(threading.Thread):
    """Removes, every `interval` seconds, the run directories under `root` that
    `removable` (given their pipeline uuids) says the policy lets go."""

    def __init__(
        self,
        root: Path,
        removable: Callable[[list[str]], list[str]],
        interval: float = 60.0,
    ) -> None:
        super().__init__(name="workspace-sweeper", daemon=True)
        self.root, self.removable, self.interval = root, removable, interval
        self.stopping = threading.Event()

    def sweep(self) -> list[str]:
        """One round: the pipelines whose directories were removed."""
        dirs = run_dirs(self.root)
        if not dirs:
            return []
        asked = sorted(dirs)
        answers = (
            self.removable(asked[i : i + ASK_AT_ONCE]) for i in range(0, len(asked), ASK_AT_ONCE)
        )
        gone = [p for answer in answers for p in answer if p in dirs]
        for pipeline in gone:
            remove_tree(dirs[pipeline])
        if gone:
            log.info("removed the workspaces of %d completed run(s)", len(gone))
        return gone

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.sweep()
            except Exception:  # the server away, a directory refused: the next round retries
                log.warning("sweeping workspaces failed", exc_info=True)

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(5)
