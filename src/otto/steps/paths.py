"""Keeping steps inside their workspace."""

from __future__ import annotations

import os
from pathlib import Path

from otto.steps.manifest import StepCallError
from otto.steps.runtime import StepFailure


def check_relative(value: str, what: str) -> None:
    """Validation before the run: a non-empty relative path without NUL."""
    if not value or "\0" in value:
        raise StepCallError(f"{what} must be a non-empty path")
    if os.path.isabs(value):
        raise StepCallError(f"{what} `{value}` must be relative to the workspace")


def resolve_inside(workspace: Path, base: Path, relative: str, what: str = "path") -> Path:
    """`base/relative` with symlinks resolved; StepFailure when it leaves `workspace`."""
    if not relative or "\0" in relative or os.path.isabs(relative):
        raise StepFailure(f"{what} `{relative}` must be a relative path inside the workspace")
    root = workspace.resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(root):
        raise StepFailure(f"{what} `{relative}` leaves the workspace")
    return path
