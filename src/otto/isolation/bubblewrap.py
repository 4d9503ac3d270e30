"""The host sandbox: each step process under bubblewrap (`bwrap`, Flatpak's sandbox).

New mount, PID, IPC and UTS namespaces (and network, when the orchestrator turns it
off). The root is empty but for the system, read-only (`/usr`, `/etc` and the
merged-`/usr` links), a fresh `/proc` and `/dev`, a private `/tmp`, and the paths the
agent names, each at its own path. `$OTTO_HOME`, the database, the object store, other
workspaces, the server's runtime directory and `/root` are simply not there.

No `--new-session` and no `--die-with-parent`: the sandboxed processes stay in the
step's process group, so the agent's SIGTERM reaches them (a script may clean up)
before its SIGKILL; and when the step's main process ends, bwrap's init (PID 1 of the
namespace) ends, and the kernel kills whatever is left in the namespace — a `setsid`
or a double fork is no escape.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from otto.isolation.base import Command, HostRunner, Mounts
from otto.isolation.spec import SandboxSpec

BWRAP = "bwrap"
SYSTEM_DIRS = ("/usr", "/etc")
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# Where /etc/resolv.conf points on hosts with systemd-resolved.
OPTIONAL_DIRS = ("/run/systemd/resolve",)


class Bubblewrap:
    kind = "bubblewrap"
    # bwrap exits after the first process of its PID namespace, whose end kills the rest.
    contains_processes = True

    def __init__(self, spec: SandboxSpec) -> None:
        self.spec = spec
        self._base = _system_args(spec)

    def provision(self, mounts: Mounts, workdir: Path, run: HostRunner) -> None:
        return None

    def command(
        self, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], mounts: Mounts
    ) -> Command:
        args = [*self._base]
        for path in (*self.spec.binds, *mounts.writable):
            args += ["--bind", str(path), str(path)]
        for path in mounts.readable:
            args += ["--ro-bind-try", str(path), str(path)]
        # The root itself (and the parents made for the mounts) read-only: a step writes
        # in its workspace, its home and /tmp, nowhere else.
        args += ["--remount-ro", "/", "--chdir", str(cwd), "--clearenv"]
        for name, value in env.items():
            args += ["--setenv", name, value]
        # The options, the step's environment among them, go through a descriptor: not
        # on a command line every user of the machine can read, and not into bwrap's own
        # environment (a stage's LD_PRELOAD or PATH would steer bwrap itself).
        fd = os.memfd_create("otto-bwrap-args", 0)
        os.write(fd, b"\0".join(a.encode() for a in args) + b"\0")
        os.lseek(fd, 0, os.SEEK_SET)
        return Command([_bwrap(), "--args", str(fd), "--", *argv], {}, fds=(fd,))

    def release(self) -> None:
        return None


def preload() -> None:
    """Find once what every sandbox needs of this machine (for forks to share)."""
    _bwrap()
    _machine_args()


@functools.cache
def _bwrap() -> str:
    """bwrap's own path, found on the agent's PATH (the operator's, never a step's)."""
    return shutil.which(BWRAP) or BWRAP


@functools.cache
def _private_system_files() -> tuple[str, ...]:
    """Files of /etc that not everyone may read (/etc/shadow, host keys): hidden, since
    a step may run as the agent's own user."""
    found = []
    for root, _, files in os.walk("/etc"):
        for name in files:
            path = os.path.join(root, name)
            try:
                mode = os.stat(path, follow_symlinks=False).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) and not mode & stat.S_IROTH:
                found.append(path)
    return tuple(found)


def _system_args(spec: SandboxSpec) -> list[str]:
    args = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if os.geteuid() == 0:
        # As root, bwrap would keep root's capabilities (reading any inode by handle,
        # mounting, loading modules): none for a step.
        args += ["--cap-drop", "ALL"]
    if not spec.network:
        args.append("--unshare-net")
    args += ["--hostname", "otto-sandbox", *_machine_args()]
    for hidden in spec.hidden:
        if any(Path(hidden).is_relative_to(d) for d in SYSTEM_DIRS) and os.path.exists(hidden):
            args += _mask(hidden)
    return args


@functools.cache
def _machine_args() -> tuple[str, ...]:
    """What every sandbox shows of this machine: the system, read-only, with the files
    of /etc that not everyone may read hidden; a fresh /proc and /dev; a private /tmp."""
    args: list[str] = []
    for path in SYSTEM_DIRS:
        args += ["--ro-bind", path, path]
    for path in SYSTEM_LINKS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in OPTIONAL_DIRS:
        args += ["--ro-bind-try", path, path]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--dir", "/var/tmp"]
    for private in _private_system_files():
        args += _mask(private)
    return tuple(args)


def _mask(path: str) -> list[str]:
    """Hide `path`: an empty directory, or an empty file, in its place."""
    if os.path.isdir(path):
        return ["--tmpfs", path]
    return ["--ro-bind", "/dev/null", path]


def unavailable() -> str | None:
    """Why bubblewrap cannot sandbox a process here (None: it can)."""
    if shutil.which(BWRAP) is None:
        return "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    command = Bubblewrap(SandboxSpec(kind="bubblewrap")).command(
        ["/bin/true"], cwd=Path("/"), env={}, mounts=Mounts()
    )
    try:
        done = subprocess.run(
            command.argv, pass_fds=command.fds, capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap cannot start: {exc}"
    finally:
        command.close()
    if done.returncode != 0:
        return f"bubblewrap cannot create namespaces here: {done.stderr.strip()}"
    return None
