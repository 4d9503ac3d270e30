"""The runtime the agent gives each step it runs (`otto.steps.runtime.StepRuntime`).

A step run sees one context's `ContextRuntime` (what the agent lends every step of the
context, given explicitly) and its own step, directory, log, deadline and environment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from otto.agent.control import ENV_SOCKET
from otto.agent.logstream import LogStream
from otto.agent.process import Interrupter, Stop, reap_orphans, run_process
from otto.isolation import Isolation, Mounts
from otto.model import Step
from otto.objectstore import ObjectStore
from otto.status import Status
from otto.steps.runtime import StepFailure, StepOutcome


class Place(Protocol):
    """A context's files and isolation, as its steps use them (`workspace.Workspace`)."""

    @property
    def path(self) -> Path:
        """The context's workspace."""

    @property
    def cache_dir(self) -> Path: ...

    @property
    def private_dir(self) -> Path:
        """This run's 0700 directory, made on first use."""

    @property
    def isolation(self) -> Isolation:
        """The context's own: its container, else the host sandbox."""

    @property
    def host_isolation(self) -> Isolation: ...

    def mounts(self) -> Mounts:
        """What every step process sees besides the system."""


BlockRunner = Callable[[list[Step], Path, float | None], tuple[Status, str | None]]
"""Runs nested steps in a directory under a deadline: (the block's status, its reason)."""

Watches = Callable[[], dict[int, Callable[[], None]]]
"""What a step's process loop watches besides the process: descriptor -> when readable."""


@dataclass(frozen=True)
class ContextRuntime:
    """What the agent lends every step run of one context, and nothing more."""

    pipeline: str
    context: str
    place: Place
    store: ObjectStore
    object_store_url: str
    control_token: str
    tool_env: Mapping[str, str]
    interrupter: Interrupter
    kill_grace: float
    log_tick: Callable[[], None]
    watches: Watches
    run_block: BlockRunner


class StepRun:
    """One step's runtime: its context's, plus where it runs, its log, its deadline."""

    def __init__(
        self,
        runtime: ContextRuntime,
        step: Step | None,
        cwd: Path,
        log: LogStream,
        deadline: float | None,
        env: Mapping[str, str],
        isolation: Isolation | None = None,
        own_dir: Path | None = None,
    ) -> None:
        self.runtime = runtime
        self.step = step
        self.cwd = cwd
        self.log = log
        self.deadline = deadline
        self.stop: Stop | None = None  # set when one of its processes was stopped
        self.env = env
        self.isolation = isolation  # None: the context's own (its container or sandbox)
        self.own_dir = own_dir  # the step's directory (`channels.py`); None: not a step

    @property
    def pipeline(self) -> str:
        return self.runtime.pipeline

    @property
    def context(self) -> str:
        return self.runtime.context

    @property
    def workspace(self) -> Path:
        return self.runtime.place.path

    @property
    def cache_dir(self) -> Path:
        return self.runtime.place.cache_dir

    @property
    def private_dir(self) -> Path:
        return self.runtime.place.private_dir

    @property
    def step_dir(self) -> Path:
        if self.own_dir is None:
            raise StepFailure("no directory of its own: not a step")
        return self.own_dir

    @property
    def store(self) -> ObjectStore:
        return self.runtime.store

    @property
    def object_store_url(self) -> str:
        return self.runtime.object_store_url

    @property
    def tool_env(self) -> Mapping[str, str]:
        return self.runtime.tool_env

    @property
    def control_socket(self) -> str:
        return self.env[ENV_SOCKET]

    @property
    def control_token(self) -> str:
        return self.runtime.control_token

    @property
    def interrupted(self) -> bool:
        late = self.deadline is not None and time.monotonic() >= self.deadline
        return late or self.runtime.interrupter.stop is not None

    def write(self, data: bytes) -> None:
        self.log.write(data)

    def say(self, line: str) -> None:
        self.log.text(line)

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        host: bool = False,
        mounts: Mounts | None = None,
        replace_env: bool = False,
        output: Callable[[bytes], None] | None = None,
    ) -> int:
        place = self.runtime.place
        isolation = self.isolation or (place.host_isolation if host else place.isolation)
        cwd = cwd or self.cwd
        try:
            command = isolation.command(
                argv,
                cwd=cwd,
                env=dict(env or {}) if replace_env else {**self.env, **(env or {})},
                mounts=place.mounts() + mounts if mounts else place.mounts(),
            )
        except ValueError as exc:
            raise StepFailure(f"cannot run {argv[0]}: {exc}") from None
        try:
            result = run_process(
                command.argv,
                cwd=cwd,
                env=command.env,
                output=output or self.log.write,
                interrupter=self.runtime.interrupter,
                deadline=self.deadline,
                grace=self.runtime.kill_grace,
                tick=self.runtime.log_tick,
                on_readable=self.runtime.watches(),
                contained=isolation.contains_processes,
                pass_fds=command.fds,
            )
        except OSError as exc:
            raise StepFailure(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        finally:
            command.close()
            if isolation.contains_processes:
                reap_orphans()
        if result.stop is not None and self.stop is None:
            self.stop = result.stop
        return result.exit_code

    def run_block(self, steps: list[Step], cwd: Path) -> StepOutcome:
        status, reason = self.runtime.run_block(steps, cwd, self.deadline)
        return StepOutcome(status.exit_code, reason=reason, status=status)
