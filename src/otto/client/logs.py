"""`otto logs`: every step's log in order, a header per step; `follow` tails them live.

Logs live in the object store under `<pipeline>/<context>/<step>.log` and grow
while a step runs; following reads each from the last offset (a Range request)
until the step has finished. A step with a block (`dir '…' { … }`) is followed by its
block's steps (`step 2.1`, `step 2.2`, …), which have logs but no state of their own. A
context that ended in `Error` (its agent lost, its steps refused) also gets its own
`context.log` shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import BinaryIO

from otto.client.errors import ClientError
from otto.client.ottoclient import OttoClient
from otto.client.terminal import Terminal, duration, exit_note
from otto.client.view import ContextView, NestedStep, RunView, StepView
from otto.objectstore.keys import context_log_key, step_log_key

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
                self._nested_logs(run, context, str(number), step.nested)
            if context.state == "Error":
                self._context_log(run, context)
        self._end()

    def _nested_logs(
        self, run: RunView, context: ContextView, path: str, nested: list[NestedStep]
    ) -> None:
        """The logs of a block's steps, in order, each followed by its own block's."""
        for index, inner in enumerate(nested, 1):
            data = self.client.read_object(step_log_key(run.uuid, context.uuid, inner.uuid))
            if data is None:
                return  # it did not run, nor did any after it
            self._nested_header(context, f"{path}.{index}", inner)
            self._write(data)
            self._nested_logs(run, context, f"{path}.{index}", inner.nested)

    def tail(self, run: RunView, context: ContextView, step: StepView, lines: int) -> None:
        """The last `lines` lines of one step's log, under its header; for a step with a
        block, also those of the block's last step that ran (the one that ended it)."""
        number = context.steps.index(step) + 1
        self._header(context, number, step, finished=True)
        data = self.client.read_object(
            step_log_key(run.uuid, context.uuid, step.uuid), tail=TAIL_BYTES
        )
        self._write(_last_lines(data, lines) if data is not None else b"(no log)\n")
        self._nested_tail(run, context, str(number), step.nested, lines)
        self._end()

    def _nested_tail(
        self, run: RunView, context: ContextView, path: str, nested: list[NestedStep], lines: int
    ) -> None:
        for index in range(len(nested), 0, -1):
            inner = nested[index - 1]
            key = step_log_key(run.uuid, context.uuid, inner.uuid)
            data = self.client.read_object(key, tail=TAIL_BYTES)
            if data is not None:
                self._nested_header(context, f"{path}.{index}", inner)
                self._write(_last_lines(data, lines))
                self._nested_tail(run, context, f"{path}.{index}", inner.nested, lines)
                return

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
        logs = _LogSequence(self, run.uuid, context, str(index + 1), step)
        while True:
            done = step.finished  # seen before this read: the read then has everything
            logs.read()
            if done:
                logs.finish()
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

    def _nested_header(self, context: ContextView, path: str, step: NestedStep) -> None:
        self._text(f"==> {context.name} › step {path} · {step.label}")

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


class _LogSequence:
    """A running step's log, then its block's steps' logs as each starts: one after the
    other, as the agent writes them (a block's step starts once the one before it ended)."""

    def __init__(
        self, printer: LogPrinter, pipeline: str, context: ContextView, number: str, step: StepView
    ) -> None:
        self.printer, self.context = printer, context
        self.entries: list[tuple[str, NestedStep | None]] = [(number, None)]
        self.entries += _flatten(number, step.nested)
        self.keys = [
            step_log_key(pipeline, context.uuid, (inner or step).uuid) for _, inner in self.entries
        ]
        self.current, self.offsets = 0, [0] * len(self.entries)

    def read(self) -> None:
        """What is new in the current log; then every later log that has begun."""
        self._read(self.current)
        while self.current + 1 < len(self.keys):
            data = self.printer.client.read_object(self.keys[self.current + 1])
            if data is None:
                return
            self._read(self.current)  # it ended before the next began: its last bytes
            self.current += 1
            path, inner = self.entries[self.current]
            if inner is not None:
                self.printer._nested_header(self.context, path, inner)
            self._show(self.current, data)

    def finish(self) -> None:
        """The step has ended: what its own log got after its block ran (a stop notice)."""
        if self.current == 0:
            return
        late = self.printer.client.read_object(self.keys[0], self.offsets[0])
        if late:
            self.printer._text(
                f"==> {self.context.name} › step {self.entries[0][0]} (after its block)"
            )
            self._show(0, late)

    def _read(self, index: int) -> None:
        data = self.printer.client.read_object(self.keys[index], self.offsets[index])
        if data:
            self._show(index, data)

    def _show(self, index: int, data: bytes) -> None:
        self.printer._write(data)
        self.offsets[index] += len(data)


def _flatten(path: str, nested: list[NestedStep]) -> list[tuple[str, NestedStep | None]]:
    """A block's steps, depth first (the order they run in), each with its number (`2.1`)."""
    found: list[tuple[str, NestedStep | None]] = []
    for index, inner in enumerate(nested, 1):
        found.append((f"{path}.{index}", inner))
        found += _flatten(f"{path}.{index}", inner.nested)
    return found


def select_contexts(run: RunView, name: str | None) -> list[ContextView]:
    """All the run's contexts, or those `name` names (a context name or a uuid prefix).

    A run refused at creation has no logs at all, nor has one whose logs expired: a
    ClientError (exit 65) says why."""
    if run.rejected is not None:
        raise ClientError(
            f"pipeline {run.uuid[:8]} never ran ({run.rejected.reason}), so it has no logs:\n"
            + run.rejected.message
        )
    if run.logs_expired:
        raise ClientError(
            f"pipeline {run.uuid[:8]}: logs expired (the server's retention policy removed its"
            " logs and artifacts; `otto show` still shows the run)"
        )
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
    return exit_note(step.exit_code)


def _last_lines(data: bytes, lines: int) -> bytes:
    kept = data.splitlines(keepends=True)[-lines:]
    return b"".join(kept)
