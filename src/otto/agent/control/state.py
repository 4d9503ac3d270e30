"""What the control socket changes: the context's status floor, captured variables, and
a request to end the context now."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from otto.agent.control.server import (
    CaptureVariable,
    ControlMessage,
    DropVariable,
    SetPipelineStatus,
    Terminate,
)
from otto.agent.process import Interrupter, Stop
from otto.status import Status, worst


class ControlState:
    """Thread-safe: the server's threads handle messages while steps read the state."""

    def __init__(self, interrupter: Interrupter, note: Callable[[str], None]) -> None:
        self._interrupter = interrupter
        self._note = note
        self._lock = threading.Lock()
        self._floor = Status.SUCCESS
        self._variables: dict[str, str] = {}

    @property
    def floor(self) -> Status:
        """The context ends no better than this."""
        with self._lock:
            return self._floor

    def variables(self) -> dict[str, str]:
        """Captured variables by name (steps see them as `VAR_<name>`)."""
        with self._lock:
            return dict(self._variables)

    def handle(self, message: ControlMessage) -> dict[str, Any]:
        with self._lock:
            if isinstance(message, SetPipelineStatus):
                self._floor = worst([self._floor, message.status])
                note = f"status set to no better than {message.status.value}"
            elif isinstance(message, CaptureVariable):
                self._variables[message.name] = message.value
                note = f"captured variable VAR_{message.name}"
            elif isinstance(message, DropVariable):
                self._variables.pop(message.name, None)
                note = f"dropped variable VAR_{message.name}"
            elif isinstance(message, Terminate):
                why = f"terminated: {message.reason}" if message.reason else "terminated"
                self._interrupter.request(Stop(message.status, why))
                note = f"terminate requested ({message.status.value})"
            else:
                raise TypeError(f"not a control message: {message!r}")
            answer = {
                "ok": True,
                "status": self._floor.value,
                "variables": sorted(self._variables),
            }
        self._note(f"control: {note}")
        return answer
