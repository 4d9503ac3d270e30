"""Agents that outlive their orchestrator: their held reports, and re-adoption.

An agent does not die with the orchestrator that started it (the zygote leaves its
agents running when the orchestrator goes), and it keeps every report it makes: each
agent has a hold directory, `<workspace_root>/.agents/<context>.<epoch>/`, with

- `reports.jsonl`: every report line, appended (and flushed) by the agent itself
  before it writes it to its report pipe; a line is complete once it ends in `\\n`;
- `held.json`: who the agent is, written by the orchestrator once it runs: the lot,
  the lease's orchestrator and epoch, the agent's PID and that PID's start time (so
  a PID reused by another process is not taken for it), its steps and container.

When an orchestrator starts again (`Orchestrator.start`, before anything may expire
its leases), it reads these: an agent still running, or gone after its last report,
whose lease the PSM renews under its epoch, is adopted (`HeldAgent`: its reports
read from the file, from the start, as the PSM refuses a report it already has);
one whose lease is refused (its context moved on: a newer attempt, an abort that
ended it) is stopped and forgotten; one gone without its last report is lost, and
its lease expires (`agent_lost`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otto.auction import Lot
from otto.isolation import ContainerSpec
from otto.psm import Lease

log = logging.getLogger("otto.orchestrator")

HOLD_DIR = ".agents"  # under the workspace root (not a run's directory: no uuid)
RECORD = "held.json"
REPORTS = "reports.jsonl"
FINAL = "context_finished"


def hold_directory(workspace_root: Path, context: str, epoch: int) -> Path:
    """A new, empty hold directory for one attempt's agent."""
    directory = workspace_root / HOLD_DIR / f"{context}.{epoch}"
    shutil.rmtree(directory, ignore_errors=True)  # a crash's leftover of this same attempt
    directory.mkdir(parents=True)
    return directory


def record(
    directory: Path,
    lot: Lot,
    lease: Lease,
    pid: int,
    steps: frozenset[str],
    container: ContainerSpec | None,
) -> None:
    """Write down who the agent in `directory` is (atomically: a crash leaves the whole
    record or none)."""
    started = process_start(pid)
    document = {
        "lot": lot.to_dict(),
        "orchestrator": lease.orchestrator,
        "epoch": lease.epoch,
        "pid": pid,
        "started": started,
        "steps": sorted(steps),
        "container": container.model_dump(mode="json") if container is not None else None,
    }
    partial = directory / f".{RECORD}"
    partial.write_text(json.dumps(document), encoding="utf-8")
    partial.rename(directory / RECORD)


@dataclass(frozen=True)
class Held:
    """An agent as its hold directory describes it."""

    directory: Path
    lot: Lot
    orchestrator: str
    epoch: int
    pid: int
    started: int | None
    steps: frozenset[str]
    container: ContainerSpec | None

    @property
    def reports(self) -> Path:
        return self.directory / REPORTS

    def lease(self) -> Lease:
        """The lease it runs under, to renew (its expiry is the PSM's to say)."""
        return Lease(self.lot.pipeline, self.lot.context, self.orchestrator, self.epoch, 0.0)

    def alive(self) -> bool:
        return self.started is not None and process_start(self.pid) == self.started

    def finished(self) -> bool:
        """Whether it made its last report (`context_finished`)."""
        try:
            with open(self.reports, encoding="utf-8") as stream:
                return any(_event(line) == FINAL for line in stream if line.endswith("\n"))
        except OSError:
            return False

    def signal(self, sig: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def forget(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def held_agents(workspace_root: Path) -> list[Held]:
    """The agents held under `workspace_root`; a directory without a readable record (its
    orchestrator died before writing it) is removed: nobody can say whose it is."""
    found: list[Held] = []
    root = workspace_root / HOLD_DIR
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return found
    for directory in entries:
        try:
            found.append(_read(directory))
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("removing hold directory %s: no readable record", directory)
            shutil.rmtree(directory, ignore_errors=True)
    return found


def _read(directory: Path) -> Held:
    data: dict[str, Any] = json.loads((directory / RECORD).read_text(encoding="utf-8"))
    container = data.get("container")
    return Held(
        directory=directory,
        lot=Lot.from_dict(data["lot"]),
        orchestrator=str(data["orchestrator"]),
        epoch=int(data["epoch"]),
        pid=int(data["pid"]),
        started=data["started"],
        steps=frozenset(data["steps"]),
        container=ContainerSpec.model_validate(container) if container else None,
    )


def process_start(pid: int) -> int | None:
    """When the process `pid` started (clock ticks since boot), None when it is gone or a
    zombie (its exit not yet collected by whoever adopted it)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stream:
            stat = stream.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command, which may hold spaces
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])  # field 22 of proc(5), the third being fields[0]


def _event(line: str) -> str | None:
    try:
        report = json.loads(line)
    except ValueError:
        return None
    return report.get("event") if isinstance(report, dict) else None


class HeldAgent:
    """An adopted agent, as an orchestrator drives one (`AgentProcess`'s face): not its
    child, so its reports are read from its held file and its end seen by its PID."""

    def __init__(self, held: Held, poll: float = 0.1) -> None:
        self.held = held
        self.pid: int | None = held.pid
        self.poll = poll
        self._finished = False

    def reports(self) -> Iterator[str]:
        """Its report lines, from the first, until its last report or its end."""
        self.held.reports.touch()  # an agent only just started may not have made it yet
        with open(self.held.reports, encoding="utf-8") as stream:
            pending = ""
            while True:
                pending += stream.readline()
                if pending.endswith("\n"):
                    line, pending = pending, ""
                    yield line
                    if self._is_final(line):
                        return
                elif self.held.alive():
                    time.sleep(self.poll)
                else:  # gone: what it wrote before it ended, and no more
                    for line in (pending + stream.read()).splitlines(keepends=True):
                        if not line.endswith("\n"):
                            return
                        yield line
                        if self._is_final(line):
                            return
                    return

    def _is_final(self, line: str) -> bool:
        self._finished = self._finished or _event(line) == FINAL
        return self._finished

    def terminate(self) -> None:
        """Ask it to abort its step (it stops the step's process group itself)."""
        self.held.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.held.signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for it to end: 0 when it made its last report, -1 when it did not (its
        real exit code went to the process that adopted it)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.held.alive():
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"agent {self.pid} still running")
            time.sleep(self.poll)
        return 0 if self._finished else -1
