"""`otto logs`: every step's log in order, a header per step; `follow` tails them live.

Logs live in the object store under `<pipeline>/<context>/<step>.log` and grow
while a step runs; following reads each from the last offset (a Range request)
until the step has finished. A context that ended in `Error` (its agent lost,
its steps refused) also gets its own `context.log` shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import BinaryIO

from otto.agent.reporter import context_log_key, step_log_key
from otto.client.errors import ClientError
from otto.client.http import OttoClient
from otto.client.terminal import Terminal, duration
from otto.client.view import ContextView, RunView, StepView

TAIL_BYTES = 256 * 1024


class LogPrinter:
    def __init__(
        self,
        client: OttoClient,
        term: Terminal,
        out: BinaryIO,
        poll: float = 0.25,
    ) -> None:
        self.client, self.term, self.out, self.poll = client, term, out, poll
        self._line_open = False  # the last byte written was not a newline

    # -- the whole thing, as it is now ---------------------------------------------------
    def print_all(self, run: RunView, contexts: list[ContextView]) -> None:
        for context in contexts:
            for number, step in enumerate(context.steps, 1):
                if step.state in ("Pending", "NotRun"):
                    continue
                self._header(context, number, step, finished=step.finished)
                data = self.client.read_object(step_log_key(run.uuid, context.uuid, step.uuid))
                self._write(data if data is not None else b"(no log)\n")
            if context.state == "Error":
                self._context_log(run, context)
        self._end()

    def tail(self, run: RunView, context: ContextView, step: StepView, lines: int) -> None:
        """The last `lines` lines of one step's log, under its header."""
        number = context.steps.index(step) + 1
        self._header(context, number, step, finished=True)
        data = self.client.read_object(
            step_log_key(run.uuid, context.uuid, step.uuid), tail=TAIL_BYTES
        )
        self._write(_last_lines(data, lines) if data is not None else b"(no log)\n")
        self._end()

    def context_tail(self, run: RunView, context: ContextView, lines: int) -> None:
        self._text(f"==> {context.name} › context log · {self.term.state(context.state)}")
        data = self.client.read_object(context_log_key(run.uuid, context.uuid), tail=TAIL_BYTES)
        self._write(_last_lines(data, lines) if data is not None else b"(no log)\n")
        self._end()

    # -- live ----------------------------------------------------------------------------
    def follow(self, uuid: str, select: Callable[[RunView], list[ContextView]]) -> RunView:
        """Print each selected step's log as it is written, in order, until the run is over."""
        run = RunView.load(self.client.pipeline(uuid))
        for wanted in select(run):
            for index in range(len(wanted.steps)):
                run = self._follow_step(run, wanted.uuid, index)
            while not run.complete and not _context(run, wanted.uuid).finished:
                run = self._wait(uuid)
            context = _context(run, wanted.uuid)
            if context.state == "Error":
                self._context_log(run, context)
        self._end()
        return run

    def _follow_step(self, run: RunView, context_uuid: str, index: int) -> RunView:
        context = _context(run, context_uuid)
        step = context.steps[index]
        while step.state == "Pending" and not context.finished and not run.complete:
            run = self._wait(run.uuid)
            context = _context(run, context_uuid)
            step = context.steps[index]
        if step.state in ("Pending", "NotRun"):
            return run
        announced = step.finished
        self._header(context, index + 1, step, finished=announced)
        key = step_log_key(run.uuid, context.uuid, step.uuid)
        offset = 0
        while True:
            done = step.finished  # seen before this read: the read then has everything
            data = self.client.read_object(key, offset)
            if data:
                self._write(data)
                offset += len(data)
            if done:
                break
            run = self._wait(run.uuid)
            context = _context(run, context_uuid)
            step = context.steps[index]
        if not announced:
            self._text(
                f"    {self.term.state(step.state)}{_exit(step)} in {duration(step.duration)}"
            )
        return run

    def _wait(self, uuid: str) -> RunView:
        self.out.flush()
        time.sleep(self.poll)
        return RunView.load(self.client.pipeline(uuid))

    # -- output --------------------------------------------------------------------------
    def _header(self, context: ContextView, number: int, step: StepView, finished: bool) -> None:
        total = len(context.steps)
        text = f"==> {context.name} › step {number}/{total} · {step.label}"
        if finished:
            text += f" · {self.term.state(step.state)}{_exit(step)} · {duration(step.duration)}"
        self._text(text)

    def _context_log(self, run: RunView, context: ContextView) -> None:
        self._text(f"==> {context.name} › context log · {self.term.state(context.state)}")
        data = self.client.read_object(context_log_key(run.uuid, context.uuid))
        self._write(data if data is not None else b"(no log)\n")

    def _text(self, line: str) -> None:
        self._end()
        self._write((self.term.ascii(line) + "\n").encode(errors="replace"))

    def _write(self, data: bytes) -> None:
        if data:
            self.term.stream.flush()  # text written before must come first
            self.out.write(data)
            self._line_open = not data.endswith(b"\n")
            self.out.flush()

    def _end(self) -> None:
        if self._line_open:
            self._write(b"\n")


def select_contexts(run: RunView, name: str | None) -> list[ContextView]:
    """All the run's contexts, or those `name` names (a context name or a uuid prefix)."""
    if name is None:
        return list(run.contexts())
    found = run.find_contexts(name)
    if not found:
        names = ", ".join(c.name for c in run.contexts()) or "none"
        raise ClientError(f"pipeline {run.uuid[:8]} has no context {name!r} (contexts: {names})")
    return found


def _context(run: RunView, uuid: str) -> ContextView:
    context = run.context(uuid)
    if context is None:
        raise ClientError(f"context {uuid} vanished from pipeline {run.uuid}")
    return context


def _exit(step: StepView) -> str:
    return f" (exit {step.exit_code})" if step.exit_code not in (None, 0) else ""


def _last_lines(data: bytes, lines: int) -> bytes:
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept)
