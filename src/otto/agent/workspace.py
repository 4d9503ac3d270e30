"""Where a context's steps run, and in what: prepared before the first step, removed after.

A `Workspace` holds the context's workspace `<workspace_root>/<pipeline>/<context>` and
the steps' home beside it, the cache kept between runs, this run's private directory and
its control socket's, the step libraries the invocation lists, and the isolation the
steps run in (`otto.isolation`): the context's container if its stage names an image,
else the host sandbox. The agent (`runner.py`) prepares it in this order:

1. `load_libraries`: fetch the listed step libraries (one that is bad, or whose step is
   another's, fails the context);
2. `make_fresh`: the workspace and home, afresh (the cache is kept);
3. `check_out`: clone the invocation's commit into the workspace (a failed checkout is
   an Error);
4. `control_socket`: a directory of the run's own for the control socket, on a memory
   filesystem when there is one; `write_credentials`: the stage's credentials as files
   in another, mounted read-only;
5. `provision`: say how the steps are isolated, and start the container if there is one
   (`provision_failed` is an Error).

What cannot be prepared ends the context before any step runs: `ContextEnded`. `remove`
deletes the run's own directories and `release` the container, whatever the outcome.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from otto.agent.invocation import Invocation, LibraryRef
from otto.agent.logstream import LogStream
from otto.agent.process import run_process
from otto.agent.steprun import ContextRuntime, StepRun
from otto.isolation import (
    Container,
    Isolation,
    Mounts,
    ProvisionError,
    Unsandboxed,
    host_isolation,
)
from otto.isolation.base import HostRunner
from otto.model import Checkout
from otto.objectstore import ObjectStore, ObjectStoreError
from otto.status import Status
from otto.steps import git
from otto.steps.builtins import BUILTINS
from otto.steps.library import LibraryError, StepLibrary, data_dir_of, fetch_library
from otto.steps.manifest import Manifest
from otto.steps.runtime import StepFailure


class ContextEnded(Exception):
    """The context ends before its steps run (bad steps, no workspace, ...)."""

    def __init__(self, status: Status, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _new_dir(parent: str) -> Path:
    """A new 0700 directory of this run's own: `tempfile.mkdtemp` without its machinery,
    which a freshly forked agent would pay for in pages copied on write. Its name holds
    the agent's PID (and PID namespace), so that it can be swept once the agent is gone
    (`remove_leftovers`)."""
    while True:
        path = Path(parent, f"otto-agent-{pid_namespace()}-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            path.mkdir(0o700)
        except FileExistsError:
            continue
        return path


@functools.cache
def pid_namespace() -> str:
    """This process's PID namespace (its inode): a PID means something only within it."""
    try:
        return os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        return "0"


_LEFTOVER = re.compile(r"otto-agent-(\d+)-(\d+)-[0-9a-f]{8}")


def remove_leftovers() -> int:
    """Remove the control and private directories of agents that are gone (killed before
    they could clean up): those of this PID namespace and user whose PID is not running.
    How many were removed."""
    removed = 0
    for parent in {runtime_dir(), tempfile.gettempdir()}:
        try:
            entries = list(os.scandir(parent))
        except OSError:
            continue
        for entry in entries:
            match = _LEFTOVER.fullmatch(entry.name)
            if match is None or match[1] != pid_namespace() or _alive(int(match[2])):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_uid != os.geteuid():
                    continue
            except OSError:
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's
    return True


@functools.cache
def runtime_dir() -> str:
    """Where control sockets go: a memory filesystem when there is one, as for any
    runtime socket (XDG_RUNTIME_DIR, else /dev/shm), the temp dir otherwise. A socket
    made and removed per context there costs no disk inode; on some filesystems (ext4
    without a journal) each removed inode slows the next minutes' file creations."""
    for candidate in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"):
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return tempfile.gettempdir()


class Workspace:
    """One context's place to run (what `steprun.Place` asks of it). `say` writes a line
    to the context's log."""

    def __init__(self, invocation: Invocation, say: Callable[[str], None]) -> None:
        self.path = invocation.workspace.absolute()
        self.home = invocation.home.absolute()
        self.cache_dir = invocation.cache.absolute()
        self.host_isolation: Isolation = host_isolation(invocation.sandbox)
        self.container = Container(invocation.container) if invocation.container else None
        self.isolation: Isolation = self.container or self.host_isolation
        self.libraries: dict[str, StepLibrary] = {}
        self._say = say
        self._private: Path | None = None  # made when first asked for
        self._control_dir: Path | None = None
        self._credentials_dir: Path | None = None

    @property
    def private_dir(self) -> Path:
        """This run's 0700 directory for files (library invocations, archives in the
        making), in the temp dir; made on first use."""
        if self._private is None:
            self._private = _new_dir(tempfile.gettempdir())
        return self._private

    def load_libraries(
        self, store: ObjectStore, refs: Sequence[LibraryRef], manifests: dict[str, Manifest]
    ) -> None:
        """Fetch each library into the cache; add its step's manifest to `manifests`."""
        for ref in refs:
            try:
                library = fetch_library(store, ref.name, ref.version, self.cache_dir)
            except LibraryError as exc:
                self._say(f"invalid: {exc}")
                raise ContextEnded(Status.FAILED, str(exc)) from None
            except ObjectStoreError as exc:
                message = f"cannot fetch step library {ref.name}: {exc}"
                raise ContextEnded(Status.ERROR, message) from None
            symbol = library.manifest.symbol
            if symbol in manifests:
                what = "a standard step" if symbol in BUILTINS else "another library's step"
                message = f"step library {ref.name} {ref.version}: `{symbol}` is {what}"
                self._say(f"invalid: {message}")
                raise ContextEnded(Status.FAILED, message)
            manifests[symbol] = library.manifest
            self.libraries[symbol] = library

    def make_fresh(self) -> None:
        """The workspace and the steps' home, each made afresh; the cache kept."""
        try:
            for fresh in (self.path, self.home):
                if fresh.exists():
                    shutil.rmtree(fresh)
                fresh.mkdir(parents=True)
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ContextEnded(Status.ERROR, f"cannot prepare the workspace: {exc}") from None
        self._say(f"workspace {self.path}")

    def check_out(self, checkout: Checkout, runtime: ContextRuntime, log: LogStream) -> None:
        """Clone the run's commit into the workspace: the agent's own clone, not a step,
        not sandboxed, in the environment of Otto's own tools; its output to `log`."""
        run = StepRun(runtime, None, self.path, log, None, runtime.tool_env, Unsandboxed())
        try:
            git.clone(run, checkout.url, self.path, branch=checkout.branch, ref=checkout.sha)
        except StepFailure as exc:
            stop = runtime.interrupter.stop
            if stop is not None:
                raise ContextEnded(stop.status, stop.reason) from None
            raise ContextEnded(Status.ERROR, f"checkout failed: {exc.message}") from None

    def control_socket(self) -> Path:
        """The path of this run's control socket, in a new directory of its own."""
        try:
            self._control_dir = _new_dir(runtime_dir())
        except OSError:  # e.g. XDG_RUNTIME_DIR removed when its user logged out
            self._control_dir = _new_dir(tempfile.gettempdir())
        return self._control_dir / "control.sock"

    @property
    def steps_dir(self) -> Path:
        """Where each step's own directory goes (`channels.py`): beside the control
        socket, which every step process sees at the same path, sandbox or container."""
        if self._control_dir is None:
            raise RuntimeError("the control socket's directory is not made yet")
        return self._control_dir

    def write_credentials(self, values: dict[str, str]) -> Path | None:
        """The credentials the stage asked for as files (0600) named by credential, in a
        0700 directory of this run's own on a memory filesystem when there is one; the
        steps see it read-only. None when there are none."""
        if not values:
            return None
        self._credentials_dir = _new_dir(runtime_dir())
        for name, value in values.items():
            fd = os.open(self._credentials_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                file.write(value)
        return self._credentials_dir

    def provision(
        self, runtime: ContextRuntime, log: LogStream, mask: Callable[[str], str]
    ) -> None:
        """Say how the steps are isolated; start the context's container, if it has one,
        its commands' output to `log` (the context's), their errors masked by `mask`."""
        if self.container is None:
            if self.host_isolation.kind == "none":
                self._say("sandbox: none — steps run unsandboxed, with the agent's access")
            else:
                self._say(f"sandbox: {self.host_isolation.kind}")
            return
        spec = self.container.spec
        self._say(f"container: {spec.image} ({spec.engine}, {spec.name})")
        # A container's mounts are fixed when it starts: what this context's libraries
        # need, and no other library's files or data.
        data = tuple(data_dir_of(self.cache_dir, lib) for lib in self.libraries.values())
        for directory in data:
            directory.mkdir(parents=True, exist_ok=True)
        libraries = tuple(lib.root for lib in self.libraries.values())
        mounts = self.mounts() + Mounts(writable=data, readable=(*libraries, self.private_dir))
        try:
            self.container.provision(mounts, self.path, self._host_runner(runtime, log, mask))
        except ProvisionError as exc:
            raise ContextEnded(Status.ERROR, f"provision_failed: {exc}") from None
        stop = runtime.interrupter.stop
        if stop is not None:
            raise ContextEnded(stop.status, stop.reason)

    def _host_runner(
        self, runtime: ContextRuntime, log: LogStream, mask: Callable[[str], str]
    ) -> HostRunner:
        """How a provisioning command of the agent's own runs: in the workspace, stopped
        by an abort, its output to `log`; its exit code and the last of its output."""

        def run_on_host(argv: Sequence[str], stdin: int | None = None) -> tuple[int, str]:
            tail = bytearray()

            def output(data: bytes) -> None:
                log.write(data)
                tail.extend(data)
                del tail[:-4096]

            result = run_process(
                argv,
                cwd=self.path,
                env=os.environ,
                output=output,
                interrupter=runtime.interrupter,
                grace=runtime.kill_grace,
                tick=runtime.log_tick,
                stdin=stdin,
            )
            return result.exit_code, mask(tail.decode(errors="replace"))

        return run_on_host

    def mounts(self) -> Mounts:
        """What every step process sees besides the system: its workspace, its home,
        its control socket, the files the agent made for it."""
        control = (self._control_dir,) if self._control_dir is not None else ()
        private = tuple(d for d in (self._private, self._credentials_dir) if d is not None)
        return Mounts(writable=(self.path, self.home, *control), readable=private)

    def remove(self) -> None:
        """Delete this run's own directories (the control socket's, the private one, the
        credentials')."""
        if self._control_dir is not None:
            shutil.rmtree(self._control_dir, ignore_errors=True)
        for own in (self._private, self._credentials_dir):
            if own is not None:
                shutil.rmtree(own, ignore_errors=True)

    def release(self) -> None:
        """Remove the context's container, if it has one."""
        if self.container is not None:
            self.container.release()
