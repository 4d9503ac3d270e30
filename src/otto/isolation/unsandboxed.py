"""`sandbox: none`: a step process runs with the agent's own access to the machine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from otto.isolation.base import Command, HostRunner, Mounts


class Unsandboxed:
    kind = "none"
    contains_processes = False

    def provision(self, mounts: Mounts, workdir: Path, run: HostRunner) -> None:
        return None

    def command(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], mounts: Mounts
    ) -> Command:
        return Command(list(argv), dict(env))

    def release(self) -> None:
        return None
