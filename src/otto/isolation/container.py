"""A context in an OCI container of the image its stage asked for (Podman, or Docker).

`provision` pulls the image when it is missing and starts one long-lived container per
context (`sleep infinity`), labelled with the pipeline, the context and the workspace
root of the orchestrator that owns it, with the agent's directories mounted at their
own paths; each step process then runs in it with `exec`, as GitLab's docker executor
runs a job's scripts; `release` kills it, whatever the outcome, and the engine removes
it. An orchestrator removes at start the containers it left behind in a crash
(`remove_stale`), and those of an agent that died (`remove`).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from otto.isolation.base import Command, HostRunner, Mounts, ProvisionError
from otto.isolation.spec import ContainerSpec

OWNER_LABEL = "otto.owner"
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Container:
    # What a step leaves running in the container ends with it, when the context ends.
    contains_processes = True

    def __init__(self, spec: ContainerSpec) -> None:
        self.spec = spec
        self.kind = spec.engine
        self._engine = [spec.engine, *spec.engine_args]
        self._started = False

    def provision(self, mounts: Mounts, workdir: Path, run: HostRunner) -> None:
        spec = self.spec
        # One command: pull the image if it is missing, start the container; removed by
        # the engine once it stops (`release` kills it).
        args = [*self._engine, "run", "--detach", "--rm", "--pull", "missing", "--init"]
        args += ["--name", spec.name]
        for key, value in spec.labels.items():
            args += ["--label", f"{key}={value}"]
        args += spec.run_args
        if spec.cpus:
            args.append(f"--cpus={spec.cpus}")
        if spec.memory:
            args.append(f"--memory={spec.memory}")
        if not spec.network:
            args += ["--network", "none"]
        for path in mounts.writable:
            args += ["--volume", f"{path}:{path}"]
        for path in mounts.readable:
            if os.path.exists(path):
                args += ["--volume", f"{path}:{path}:ro"]
        args += ["--workdir", str(workdir), "--entrypoint", "sleep", "--", spec.image, "infinity"]
        self._started = True  # from here on, a container may exist: always remove it
        code, output = run(args)
        if code != 0:
            raise ProvisionError(f"cannot start a container of {spec.image}: {_last_line(output)}")

    def release(self) -> None:
        """Kill the container, and the engine removes it (`--rm`): quicker than removing
        it here. One that never ran (an abort while it was made) is removed outright;
        what a crash leaves behind, `remove_stale` removes."""
        if self._started:
            if not _quietly([*self._engine, "kill", self.spec.name]):
                remove(self.spec)
            self._started = False

    def command(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], mounts: Mounts
    ) -> Command:
        # The step's environment goes in through an environment file the engine reads
        # from a descriptor: not on a command line every user of the machine can read,
        # nor into the engine's own environment (a stage's LD_PRELOAD or CONTAINER_HOST
        # would steer the engine). PATH is the image's own.
        lines = []
        for name, value in env.items():
            if name == "PATH":
                continue
            if not VARIABLE.match(name):
                raise ValueError(f"`{name}` cannot be the name of a variable in a container")
            if "\n" in value or "\r" in value:
                raise ValueError(
                    f"`{name}` holds a line break, which a container's environment cannot"
                )
            lines.append(f"{name}={value}\n")
        fd = os.memfd_create("otto-env", 0)
        os.write(fd, "".join(lines).encode())
        os.lseek(fd, 0, os.SEEK_SET)
        args = [*self._engine, "exec", "--workdir", str(cwd), "--env-file", f"/dev/fd/{fd}"]
        return Command([*args, self.spec.name, *argv], dict(os.environ), fds=(fd,))


def remove(spec: ContainerSpec) -> None:
    """Remove the container of `spec` (gone already: nothing happens)."""
    _quietly([*_rm([spec.engine, *spec.engine_args]), spec.name])


def remove_stale(engine: Sequence[str], owner: str) -> int:
    """Remove every container this owner (an orchestrator's workspace root) left behind;
    how many there were."""
    try:
        found = subprocess.run(
            [*engine, "ps", "--all", "--quiet", "--filter", f"label={OWNER_LABEL}={owner}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return 0
    ids = found.stdout.split()
    if ids:
        _quietly([*_rm(engine), *ids])
    return len(ids)


def _rm(engine: Sequence[str]) -> list[str]:
    """Remove at once: `sleep`, as PID 1, ignores the SIGTERM a stop would send first."""
    now = [] if os.path.basename(engine[0]) == "docker" else ["--time", "0"]
    return [*engine, "rm", "--force", *now]


def _quietly(argv: list[str]) -> bool:
    """Whether the engine did it. If not, the orchestrator's next start removes the
    container (remove_stale)."""
    try:
        return subprocess.run(argv, capture_output=True, timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
