"""A context in an OCI container of the image its stage asked for (Podman, or Docker).

`provision` pulls the image when it is missing and starts one long-lived container per
context, labelled with the pipeline, the context and the workspace root of the
orchestrator that owns it, with the agent's directories mounted at their own paths; each
step process then runs in it with `exec`, as GitLab's docker executor runs a job's
scripts. With Podman the container's main process waits on a pipe whose write end only
the agent holds (its "lifeline"): `release` closes it — as the kernel does when the agent
dies, however it dies — and the container ends and the engine removes it, with no engine
command to run. With Docker (whose containers the daemon starts, out of reach of the
agent's descriptors) the main process sleeps and `release` kills it. An orchestrator
removes at start the containers it left behind (`remove_stale`), and those of an agent
that died (`remove`).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Collection, Mapping, Sequence
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
        self._started = False  # a container may exist
        self._running = False  # it was made and started
        self._lifeline: int | None = None  # the write end its main process waits on

    def provision(self, mounts: Mounts, workdir: Path, run: HostRunner) -> None:
        spec = self.spec
        # One command: pull the image if it is missing, start the container; removed by
        # the engine once it stops (`release`).
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
        args += ["--workdir", str(workdir)]
        self._started = True  # from here on, a container may exist: always remove it
        if _is_docker(spec.engine):
            code, output = run([*args, "--entrypoint", "sleep", "--", spec.image, "infinity"])
        else:
            code, output = self._start_with_lifeline(args, run)
        if code != 0:
            raise ProvisionError(f"cannot start a container of {spec.image}: {_last_line(output)}")
        self._running = True

    def _start_with_lifeline(self, args: list[str], run: HostRunner) -> tuple[int, str]:
        """Start the container with a main process that ends when the lifeline's write end
        is closed: the read end goes in as the process's descriptor 3 (`--preserve-fds`),
        moved there from the engine's standard input by a shell of the agent's."""
        read_end, self._lifeline = os.pipe()
        wrapper = ["/bin/sh", "-c", 'exec "$@" 3<&0 0</dev/null', "otto-provision"]
        args = [*wrapper, *args, "--preserve-fds", "1", "--entrypoint", "sh", "--"]
        try:
            return run([*args, self.spec.image, "-c", "read -r _ <&3"], stdin=read_end)
        finally:
            os.close(read_end)

    def release(self) -> None:
        """End the container, and the engine removes it (`--rm`). One that may exist but
        never ran (provisioning failed, or was aborted) is removed outright; what a crash
        of the engine leaves behind, `remove_stale` removes."""
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
            self._started = not self._running  # a running one ends now, by itself
        if self._started:
            if not (self._running and _quietly([*self._engine, "kill", self.spec.name])):
                remove(self.spec)
            self._started = False
        self._running = False

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


def remove_stale(engine: Sequence[str], owner: str, keep: Collection[str] = ()) -> int:
    """Remove every container this owner (an orchestrator's workspace root) left behind,
    but those named in `keep` (of agents it re-adopted); how many there were."""
    listing = [*engine, "ps", "--all", "--filter", f"label={OWNER_LABEL}={owner}"]
    try:
        found = subprocess.run(
            [*listing, "--format", "{{.Names}}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return 0
    ids = [name for name in found.stdout.split() if name not in keep]
    if ids:
        _quietly([*_rm(engine), *ids])
    return len(ids)


def _is_docker(engine: str) -> bool:
    return os.path.basename(engine) == "docker"


def _rm(engine: Sequence[str]) -> list[str]:
    """Remove at once: the main process ignores the SIGTERM a stop would send first."""
    now = [] if _is_docker(engine[0]) else ["--time", "0"]
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
