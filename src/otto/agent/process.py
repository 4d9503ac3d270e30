"""Running one step process: its own process group, one pipe for its output.

The process starts in a new session, so it and everything it spawns form a
process group that is signalled as a whole: on abort, on timeout, and when
the main process exits while children it left behind are still running.
SIGTERM first, SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from otto.status import Status

READ_SIZE = 1 << 20
F_SETPIPE_SZ = 1031
# How long output may keep coming after the whole process group is gone
# (from a process that left the group while holding the pipe).
DRAIN_TIMEOUT = 1.0
# How long a group whose main process ended may take to be gone without a /proc scan.
SETTLE = 0.02


@dataclass(frozen=True)
class Stop:
    """Why the running process must stop: abort, terminate request or timeout."""

    status: Status
    reason: str


class Interrupter:
    """Requests to stop the running process, from another thread or a signal handler."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self.stop: Stop | None = None
        self._closed = False

    @property
    def fileno(self) -> int:
        return self._read

    def request(self, stop: Stop) -> None:
        """The first request wins; the running process (if any) is stopped promptly."""
        if self.stop is None:
            self.stop = stop
        if not self._closed:
            with contextlib.suppress(OSError):
                os.write(self._write, b"x")

    def drain(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._read, 4096):
                pass

    def close(self) -> None:
        self._closed = True  # a late request must not write to a reused descriptor
        os.close(self._read)
        os.close(self._write)


@dataclass
class ProcessResult:
    exit_code: int
    stop: Stop | None = None  # set when the process was stopped by a request or timeout


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    output: Callable[[bytes], None],
    interrupter: Interrupter,
    deadline: float | None = None,
    grace: float = 10.0,
    tick: Callable[[], float | None] | None = None,
    on_readable: Mapping[int, Callable[[], None]] | None = None,
    contained: bool = False,
    pass_fds: Sequence[int] = (),
    stdin: int | None = None,
) -> ProcessResult:
    """Run `argv`, feed its interleaved stdout+stderr to `output`, return how it ended.

    `deadline` (time.monotonic()) stops it with reason `timeout`; a request on
    `interrupter` stops it with that request's status. `tick` is called while
    waiting and returns when it wants to be called next (e.g. to flush logs).
    `on_readable`: descriptors to watch meanwhile, each with what to call (once)
    when it becomes readable. Nothing the process started is left running when
    this returns. `contained`: the process exits by itself only once everything it
    started has ended (a sandbox's PID namespace): then its group is not searched.
    `pass_fds`: descriptors the process inherits; `stdin`: its standard input (else
    /dev/null).
    """
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_fd, F_SETPIPE_SZ, READ_SIZE)
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=write_fd,
            stderr=write_fd,
            start_new_session=True,
            pass_fds=pass_fds,
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    watch = _Watch(proc, read_fd, output, interrupter, grace, tick, on_readable or {}, contained)
    with watch:
        return watch.run(deadline)


class _Watch:
    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        read_fd: int,
        output: Callable[[bytes], None],
        interrupter: Interrupter,
        grace: float,
        tick: Callable[[], float | None] | None,
        on_readable: Mapping[int, Callable[[], None]],
        contained: bool = False,
    ) -> None:
        self.proc = proc
        self.contained = contained
        self.tick = tick
        self.pgid = proc.pid
        self.read_fd = read_fd
        self.output = output
        self.interrupter = interrupter
        self.grace = grace
        self.selector = selectors.DefaultSelector()
        self.on_readable = on_readable
        self.pidfd: int | None = None
        self.stop: Stop | None = None
        self.kill_at: float | None = None

    def __enter__(self) -> _Watch:
        self.selector.register(self.read_fd, selectors.EVENT_READ, "out")
        self.selector.register(self.interrupter.fileno, selectors.EVENT_READ, "wake")
        for fd, call in self.on_readable.items():
            self.selector.register(fd, selectors.EVENT_READ, call)
        try:
            self.pidfd = os.pidfd_open(self.proc.pid)
            self.selector.register(self.pidfd, selectors.EVENT_READ, "exit")
        except (AttributeError, OSError):
            self.pidfd = None  # no pidfd: poll for the exit instead
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.returncode is None:  # an exception while watching: leave nothing behind
            self._signal(signal.SIGKILL)
            self.proc.wait()
        self._signal(signal.SIGKILL)
        self.selector.close()
        os.close(self.read_fd)
        if self.pidfd is not None:
            os.close(self.pidfd)

    def run(self, deadline: float | None) -> ProcessResult:
        reading = True
        exited = False
        if self.interrupter.stop is not None:
            self._begin_stop(self.interrupter.stop)
        while not exited:
            timeout = self._timeout(deadline)
            for key, _ in self.selector.select(timeout):
                if key.data == "out":
                    reading = self._read()
                    if not reading:
                        self.selector.unregister(self.read_fd)
                elif key.data == "exit":
                    exited = True
                    self.selector.unregister(key.fd)  # stays readable from now on
                elif key.data == "wake":
                    self.interrupter.drain()
                else:
                    self.selector.unregister(key.fd)
                    key.data()
            if self.pidfd is None and self.proc.poll() is not None:
                exited = True
            now = time.monotonic()
            if self.stop is None and self.interrupter.stop is not None:
                self._begin_stop(self.interrupter.stop)
            if self.stop is None and deadline is not None and now >= deadline:
                self._begin_stop(Stop(Status.FAILED, "timeout"))
            if self.kill_at is not None and now >= self.kill_at:
                self._signal(signal.SIGKILL)
                self.kill_at = None
        code = self.proc.wait()
        if not (self.contained and code >= 0):  # a contained process killed: search
            self._end_group()
        if reading:
            self._drain()
        return ProcessResult(code, self.stop)

    def _timeout(self, deadline: float | None) -> float | None:
        wanted = self.tick() if self.tick is not None else None
        times = [t for t in (deadline if self.stop is None else None, self.kill_at, wanted) if t]
        timeout = max(0.0, min(times) - time.monotonic()) if times else None
        if self.pidfd is None:
            timeout = 0.05 if timeout is None else min(timeout, 0.05)
        return timeout

    def _read(self) -> bool:
        try:
            data = os.read(self.read_fd, READ_SIZE)
        except BlockingIOError:
            return True
        if not data:
            return False
        self.output(data)
        return True

    def _begin_stop(self, stop: Stop) -> None:
        self.stop = stop
        self._signal(signal.SIGTERM)
        self.kill_at = time.monotonic() + self.grace

    def _end_group(self) -> None:
        """The main process is gone: stop what it left behind in its group."""
        if not self._group_alive(settle=SETTLE):
            return
        self._signal(signal.SIGTERM)
        end = time.monotonic() + self.grace
        while self._group_alive() and time.monotonic() < end:
            if not self._read_for(0.05):
                time.sleep(0.05)  # output ended: only the group is left to wait for
        self._signal(signal.SIGKILL)

    def _drain(self) -> None:
        end = time.monotonic() + DRAIN_TIMEOUT
        while time.monotonic() < end:
            if not self._read_for(end - time.monotonic()):
                return

    def _read_for(self, timeout: float) -> bool:
        """Read what arrives within `timeout`; False at end of output (at once, if it
        has ended already)."""
        if self.read_fd not in self.selector.get_map():
            return False
        for key, _ in self.selector.select(timeout):
            if key.data == "wake":
                self.interrupter.drain()  # already stopping: nothing more to do
            elif key.data == "out":
                if not self._read():
                    self.selector.unregister(self.read_fd)
                    return False
            elif key.data != "exit":
                self.selector.unregister(key.fd)
                key.data()
        return True

    def _group_alive(self, settle: float = 0.0) -> bool:
        """Whether a live process is left in the group. A process that has just ended may
        linger a moment as a zombie (a sandbox's first process, until PID 1 reaps it):
        for `settle` seconds the cheap check is repeated before /proc is read."""
        pause, deadline = 0.0005, time.monotonic() + settle
        while True:
            try:
                os.killpg(self.pgid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            if time.monotonic() >= deadline:
                return _has_live_member(self.pgid)
            time.sleep(pause)
            pause = min(2 * pause, 0.004)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, sig)


def _has_live_member(pgid: int) -> bool:
    """Whether the group has a member that is not a zombie (zombies wait for their parent)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


PR_SET_CHILD_SUBREAPER = 36
_adopting = False


def adopt_orphans() -> None:
    """Make this process (an agent's own, never a caller's that runs agents in process)
    the reaper of what its children leave behind (Linux). A sandbox's first process
    outlives bwrap by a moment; orphaned, it would wait as a zombie for PID 1, which on
    some hosts reaps only now and then, and hundreds of zombies slow every later fork."""
    global _adopting
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        _adopting = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def reap_orphans() -> None:
    """Reap the orphans adopted so far, if this process adopts them. Only between
    processes: a process still run with `run_process` must be waited for by it."""
    if not _adopting:
        return
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
