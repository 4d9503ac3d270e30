"""The files a step's scripts talk back through, as GitHub Actions' `$GITHUB_OUTPUT`:
they work in any image with only a POSIX shell.

- `$OTTO_STATUS`: a word per line; `unstable` marks the step Unstable, `failure` Failed,
  `success` changes nothing (a step's outcome is the worst of its exit code's and its
  words). Any other word is said in the step's log and ignored.
- `$OTTO_VARIABLES`: `NAME=value` lines (or `NAME<<EOF` … `EOF`), captured as the control
  socket's `CaptureVariable` does: later steps and stages see `VAR_<NAME>`
  (`otto.steps.variables`).

Each step gets a directory of its own beside the control socket (a memory filesystem
when there is one, visible to the step in its sandbox or container at the same path),
holding both files empty when it starts; the agent reads them once it has ended.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from otto.status import Status, worst
from otto.steps.variables import (
    MAX_FILE_BYTES,
    VariablesError,
    parse_variables,
    read_bounded,
)

ENV_STATUS = "OTTO_STATUS"
ENV_VARIABLES = "OTTO_VARIABLES"
STATUS_WORDS = {"success": Status.SUCCESS, "unstable": Status.UNSTABLE, "failure": Status.FAILED}
MAX_STATUS_BYTES = 64 * 1024


@dataclass(frozen=True)
class Said:
    """What a step wrote to its files: a status (None: nothing), variables, and notes
    for its log (words ignored)."""

    status: Status | None
    variables: dict[str, str]
    notes: list[str]


@dataclass(frozen=True)
class StepChannels:
    """One step's directory and files."""

    directory: Path

    @property
    def status_file(self) -> Path:
        return self.directory / "status"

    @property
    def variables_file(self) -> Path:
        return self.directory / "variables"

    @classmethod
    def make(cls, parent: Path, step: str) -> StepChannels:
        """A fresh directory for `step` under `parent` (the run's own), with empty files."""
        channels = cls(parent / step)
        channels.directory.mkdir(0o700)
        for path in (channels.status_file, channels.variables_file):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
        return channels

    def env(self) -> dict[str, str]:
        return {ENV_STATUS: str(self.status_file), ENV_VARIABLES: str(self.variables_file)}

    def read(self) -> Said:
        """What the step wrote; VariablesError (naming the file) if it cannot be captured."""
        status, notes = _status(_read(self.status_file, MAX_STATUS_BYTES, ENV_STATUS))
        text = _read(self.variables_file, MAX_FILE_BYTES, ENV_VARIABLES)
        try:
            variables = parse_variables(text)
        except VariablesError as exc:
            raise VariablesError(f"${ENV_VARIABLES} {exc}") from None
        return Said(status, variables, notes)

    def remove(self) -> None:
        """Delete the directory: its two files, else (a step left more there) all of it."""
        for path in (self.status_file, self.variables_file):
            path.unlink(missing_ok=True)
        try:
            self.directory.rmdir()
        except OSError:
            shutil.rmtree(self.directory, ignore_errors=True)


def _read(path: Path, limit: int, name: str) -> str:
    """A file's text (a missing one: empty, the step removed it); over `limit`: refused."""
    data = read_bounded(path, limit)
    if data is None:
        raise VariablesError(f"${name} holds more than {limit // 1024} KiB")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise VariablesError(f"${name} is not UTF-8 text") from None


def _status(text: str) -> tuple[Status | None, list[str]]:
    said: list[Status] = []
    notes: list[str] = []
    for line in text.splitlines():
        word = line.strip().lower()
        if not word:
            continue
        if word in STATUS_WORDS:
            said.append(STATUS_WORDS[word])
        else:
            known = ", ".join(STATUS_WORDS)
            notes.append(f"${ENV_STATUS}: ignored {line.strip()[:80]!r} (known: {known})")
    return (worst(said) if said else None), notes
