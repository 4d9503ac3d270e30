"""What a built-in step gets from the agent running it, and what it gives back.

A built-in step is a function `run(rt: StepRuntime, params) -> StepOutcome`
with `params` already bound by name and checked against the step's manifest.
It writes to the step's log with `rt.say()`/`rt.write()`, runs processes with
`rt.run()` (their own process group, output streamed to the log, stopped on
abort and timeout) and fails with `StepFailure(message)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from otto.isolation import Mounts
from otto.model import Step
from otto.objectstore import ObjectStore
from otto.status import Status


class StepFailure(Exception):
    """The step fails: `message` goes to its log and becomes the reason."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass(frozen=True)
class StepOutcome:
    exit_code: int
    reason: str | None = None
    status: Status | None = None  # when not the exit code's own (e.g. a `dir` block's)
    variables: Mapping[str, str] = field(default_factory=dict)  # captured: later VAR_<name>

    @property
    def final_status(self) -> Status:
        return self.status or Status.from_exit_code(self.exit_code)


class StepRuntime(Protocol):
    """The agent's side of one running step."""

    @property
    def pipeline(self) -> str: ...

    @property
    def context(self) -> str: ...

    @property
    def step(self) -> Step | None:
        """The running step (None while the agent prepares the workspace)."""

    @property
    def workspace(self) -> Path:
        """The context's workspace: no step may read or write outside it."""

    @property
    def cwd(self) -> Path:
        """Where the step runs (the workspace, or a subdirectory under `dir`)."""

    @property
    def cache_dir(self) -> Path:
        """Kept between runs on this machine: git mirrors, step libraries."""

    @property
    def private_dir(self) -> Path:
        """A 0700 directory of this agent run, for files no step output should hold."""

    @property
    def step_dir(self) -> Path:
        """This step's own directory, which its processes may write to (in a sandbox or a
        container alike), removed once the step has ended."""

    @property
    def store(self) -> ObjectStore: ...

    @property
    def object_store_url(self) -> str: ...

    @property
    def control_socket(self) -> str: ...

    @property
    def control_token(self) -> str: ...

    @property
    def tool_env(self) -> Mapping[str, str]:
        """The environment of Otto's own tools (a git mirror's refresh): the agent's,
        never the step's."""

    @property
    def env(self) -> Mapping[str, str]:
        """The step's environment (OTTO_*, the context's, secrets, captured VAR_*)."""

    @property
    def interrupted(self) -> bool:
        """An abort or terminate is pending, or the step's deadline has passed."""

    def write(self, data: bytes) -> None:
        """Raw bytes to the step's log."""

    def say(self, line: str) -> None:
        """A line of text to the step's log."""

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
        """Run a process in the step's cwd and environment (`env` adds to it), isolated as
        the context is (`otto.isolation`); its exit code. `host`: on this machine, in its
        sandbox, even when the context has a container (Otto's own tools: `git`).
        `mounts`: what it may see beyond the workspace, home and control socket.
        `replace_env`: `env` is the whole environment (Otto's own tools), not an addition.
        `output`: where its output goes instead of the step's log (e.g. to transcode it)."""

    def run_block(self, steps: list[Step], cwd: Path) -> StepOutcome:
        """Run nested steps (validated with the rest) in `cwd`, as `dir` does."""
