"""How an agent reports progress: a small interface, and a JSON-lines implementation.

Every JSON line carries the pipeline, the context and the lease (opaque: e.g.
id and epoch), so a receiver can fence out reports of a stale attempt:

    {"event": "step_started", "pipeline", "context", "lease", "at", "step", "symbol"}
    {"event": "step_finished", ..., "step", "symbol", "exit_code", "status", "reason", "log"}
    {"event": "context_finished", ..., "status", "reason", "log", "variables"}

(`variables`: what the context's steps captured, for later contexts' steps.)

With a `held` file, each line is appended there first (flushed): the report outlives
the reader of `stream`. Once `stream`'s reader is gone (the orchestrator died) the
agent carries on, its reports kept in the held file for an orchestrator that
re-adopts it (`otto.orchestrator.adoption`).
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from pydantic import JsonValue

from otto.model import Step
from otto.objectstore.keys import context_log_key, step_log_key
from otto.status import Status


class Reporter(Protocol):
    def step_started(self, step: Step) -> None: ...

    def step_finished(
        self, step: Step, exit_code: int | None, status: Status, reason: str | None
    ) -> None: ...

    def context_finished(
        self, status: Status, reason: str | None, variables: Mapping[str, str] | None = None
    ) -> None: ...


class JsonLinesReporter:
    """Writes one JSON object per line to `stream`, flushed per line."""

    def __init__(
        self,
        stream: IO[str],
        pipeline: str,
        context: str,
        lease: dict[str, JsonValue] | None = None,
        held: IO[str] | None = None,
    ) -> None:
        self.stream: IO[str] | None = stream
        self.pipeline = pipeline
        self.context = context
        self.lease = lease or {}
        self.held = held
        self._lock = threading.Lock()

    @classmethod
    def open(
        cls,
        path: str | None,
        pipeline: str,
        context: str,
        lease: dict[str, JsonValue],
        hold: str | None = None,
    ) -> JsonLinesReporter:
        """To the file at `path` (appended to), or stdout when `path` is None; and to the
        file at `hold` too, when given."""
        stream = sys.stdout if path is None else open(path, "a", encoding="utf-8")  # noqa: SIM115
        held = None if hold is None else open(hold, "a", encoding="utf-8")  # noqa: SIM115
        return cls(stream, pipeline, context, lease, held)

    def close(self) -> None:
        for stream in (self.stream, self.held):
            if stream is not None and stream is not sys.stdout:
                with contextlib.suppress(OSError):  # a reader already gone
                    stream.close()

    def step_started(self, step: Step) -> None:
        self._emit("step_started", step=step.uuid, symbol=step.symbol)

    def step_finished(
        self, step: Step, exit_code: int | None, status: Status, reason: str | None
    ) -> None:
        self._emit(
            "step_finished",
            step=step.uuid,
            symbol=step.symbol,
            exit_code=exit_code,
            status=status.value,
            reason=reason,
            log=step_log_key(self.pipeline, self.context, step.uuid),
        )

    def context_finished(
        self, status: Status, reason: str | None, variables: Mapping[str, str] | None = None
    ) -> None:
        self._emit(
            "context_finished",
            status=status.value,
            reason=reason,
            log=context_log_key(self.pipeline, self.context),
            variables=dict(variables or {}),
        )

    def _emit(self, event: str, **fields: Any) -> None:
        record = {
            "event": event,
            "pipeline": self.pipeline,
            "context": self.context,
            "lease": self.lease,
            "at": datetime.now(UTC).isoformat(),
            **fields,
        }
        line = json.dumps(record) + "\n"
        with self._lock:
            if self.held is not None:
                self.held.write(line)
                self.held.flush()
            if self.stream is None:
                return
            try:
                self.stream.write(line)
                self.stream.flush()
            except BrokenPipeError:
                if self.held is None:
                    raise
                self.stream = None  # the orchestrator died: the held file keeps the rest
