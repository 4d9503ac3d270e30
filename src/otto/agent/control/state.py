"""What the control socket changes: the context's status floor, captured variables, and
a request to end the context now; and what it tells: the stage's credentials."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from otto.agent.control.server import (
    CaptureVariable,
    ControlMessage,
    ControlRejected,
    DropVariable,
    RetrieveCredential,
    SetPipelineStatus,
    Terminate,
)
from otto.agent.process import Interrupter, Stop
from otto.status import Status, worst


class ControlState:
    """Thread-safe: the server's threads handle messages while steps read the state."""

    def __init__(
        self,
        interrupter: Interrupter,
        note: Callable[[str], None],
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        self._interrupter = interrupter
        self._note = note
        self._credentials = dict(credentials or {})  # only those the stage asked for
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

    def capture(self, variables: Mapping[str, str]) -> None:
        """Record variables a step captured otherwise (`$OTTO_VARIABLES`, `returnStdout`)."""
        with self._lock:
            self._variables.update(variables)

    def handle(self, message: ControlMessage) -> dict[str, Any]:
        if isinstance(message, RetrieveCredential):
            return self._credential(message.name)
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

    def _credential(self, name: str) -> dict[str, Any]:
        value = self._credentials.get(name)
        if value is None:
            self._note(f"control: credential {name} refused: the stage did not ask for it")
            raise ControlRejected(f"no credential {name} for this context")
        self._note(f"control: credential {name} retrieved")
        return {"ok": True, "name": name, "value": value}
