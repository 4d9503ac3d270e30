"""The interface every kind of isolation implements, and what they share."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class HostRunner(Protocol):
    """Runs a provisioning command on this machine, its output to the context's log,
    stopped by an abort: its exit code and the last of its output. `stdin`: a
    descriptor for its standard input (else /dev/null)."""

    def __call__(self, argv: Sequence[str], stdin: int | None = None) -> tuple[int, str]: ...


class ProvisionError(Exception):
    """The environment a context asked for cannot be made (an image not found, ...)."""


@dataclass
class Command:
    """A process to start on this machine: its command line and environment, descriptors
    it inherits, and what to undo once it has ended (`close`). The step's own environment
    never reaches the launcher (bwrap, podman): only the process it starts."""

    argv: list[str]
    env: dict[str, str]
    fds: tuple[int, ...] = ()
    files: tuple[Path, ...] = ()

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        for path in self.files:
            path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Mounts:
    """What a step process may see of this machine besides the system: each at its own
    path, so paths mean the same inside and out (the workspace, the control socket, a
    step library's files)."""

    writable: tuple[Path, ...] = ()
    readable: tuple[Path, ...] = ()

    def __add__(self, other: Mounts) -> Mounts:
        return Mounts(self.writable + other.writable, self.readable + other.readable)


class Isolation(Protocol):
    """Where a context's step processes run."""

    @property
    def kind(self) -> str:
        """`bubblewrap`, `none`, or the container engine (`podman`, `docker`)."""

    @property
    def contains_processes(self) -> bool:
        """Whether a command of `command()` ends by itself only once every process it
        started has ended (or is confined where it cannot outlive the context)."""

    def provision(self, mounts: Mounts, workdir: Path, run: HostRunner) -> None:
        """Make the environment, once per context, before any step; ProvisionError if not."""

    def command(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], mounts: Mounts
    ) -> Command:
        """What runs `argv` isolated, in `cwd` with `env` (ValueError: it cannot)."""

    def release(self) -> None:
        """Remove what `provision` made, whatever the context's outcome."""
