"""The runtime the agent gives each step it runs (`otto.steps.api.StepRuntime`)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from otto.agent.control import ENV_SOCKET
from otto.agent.logstream import LogStream
from otto.agent.process import Stop, reap_orphans, run_process
from otto.isolation import Isolation, Mounts
from otto.model import Step
from otto.objectstore import ObjectStore
from otto.steps.api import StepFailure, StepOutcome

if TYPE_CHECKING:
    from otto.agent.runner import Agent


class StepRun:
    """One step's view of its agent: where it runs, its log, its processes, its deadline."""

    def __init__(
        self,
        agent: Agent,
        step: Step | None,
        cwd: Path,
        log: LogStream,
        deadline: float | None,
        isolation: Isolation | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.agent = agent
        self.step = step
        self.cwd = cwd
        self.log = log
        self.deadline = deadline
        self.stop: Stop | None = None  # set when one of its processes was stopped
        self.env: Mapping[str, str] = agent.step_env(step) if env is None else env
        self.isolation = isolation  # None: the context's own (its container or sandbox)

    @property
    def pipeline(self) -> str:
        return self.agent.pipeline

    @property
    def context(self) -> str:
        return self.agent.context

    @property
    def workspace(self) -> Path:
        return self.agent.workspace

    @property
    def cache_dir(self) -> Path:
        return self.agent.cache_dir

    @property
    def private_dir(self) -> Path:
        return self.agent.private_dir

    @property
    def store(self) -> ObjectStore:
        return self.agent.store

    @property
    def object_store_url(self) -> str:
        return self.agent.invocation.object_store

    @property
    def tool_env(self) -> Mapping[str, str]:
        return self.agent.tool_env

    @property
    def control_socket(self) -> str:
        return self.env[ENV_SOCKET]

    @property
    def control_token(self) -> str:
        return self.agent.token

    @property
    def interrupted(self) -> bool:
        late = self.deadline is not None and time.monotonic() >= self.deadline
        return late or self.agent.interrupter.stop is not None

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
    ) -> int:
        isolation = self.isolation or (self.agent.host_isolation if host else self.agent.isolation)
        cwd = cwd or self.cwd
        try:
            command = isolation.command(
                argv,
                cwd=cwd,
                env=dict(env or {}) if replace_env else {**self.env, **(env or {})},
                mounts=self.agent.mounts() + mounts if mounts else self.agent.mounts(),
            )
        except ValueError as exc:
            raise StepFailure(f"cannot run {argv[0]}: {exc}") from None
        try:
            result = run_process(
                command.argv,
                cwd=cwd,
                env=command.env,
                output=self.log.write,
                interrupter=self.agent.interrupter,
                deadline=self.deadline,
                grace=self.agent.invocation.kill_grace,
                tick=self.agent.logs.tick,
                on_readable=self.agent.control_wakeup(),
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
        status, reason = self.agent.run_steps(steps, cwd, self.deadline)
        return StepOutcome(status.exit_code, reason=reason, status=status)
