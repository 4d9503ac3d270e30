"""A client for the control socket, for steps written in Python or run from a shell."""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import Any

from otto.agent.control import ENV_SOCKET, ENV_TOKEN, PATH


class ControlError(Exception):
    """The agent could not be reached or refused the message."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def send(
    message: dict[str, Any],
    *,
    socket_path: str | None = None,
    token: str | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Send one message (`{"type": ...}`); the agent's JSON answer, or ControlError."""
    socket_path = socket_path or os.environ.get(ENV_SOCKET)
    token = token or os.environ.get(ENV_TOKEN)
    if not socket_path or not token:
        raise ControlError(f"not inside an Otto step: {ENV_SOCKET} or {ENV_TOKEN} is not set")
    conn = _UnixConnection(socket_path, timeout)
    try:
        conn.request(
            "POST",
            PATH,
            body=json.dumps(message),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        body = response.read()
    except OSError as exc:
        raise ControlError(f"cannot reach the agent at {socket_path}: {exc}") from None
    finally:
        conn.close()
    try:
        answer = json.loads(body or b"{}")
    except ValueError:
        answer = {}
    if response.status != 200:
        error = answer.get("error", {}) if isinstance(answer, dict) else {}
        raise ControlError(error.get("message") or f"the agent answered {response.status}")
    return answer if isinstance(answer, dict) else {}


def set_status(status: str, **kw: Any) -> dict[str, Any]:
    return send({"type": "SetPipelineStatus", "status": status}, **kw)


def capture_variable(name: str, value: str, **kw: Any) -> dict[str, Any]:
    return send({"type": "CaptureVariable", "name": name, "value": value}, **kw)


def drop_variable(name: str, **kw: Any) -> dict[str, Any]:
    return send({"type": "DropVariable", "name": name}, **kw)


def terminate(status: str, reason: str | None = None, **kw: Any) -> dict[str, Any]:
    return send({"type": "Terminate", "status": status, "reason": reason}, **kw)


def retrieve_credential(name: str, **kw: Any) -> str:
    """The value of a credential the step's stage asked for (ControlError otherwise)."""
    return str(send({"type": "RetrieveCredential", "name": name}, **kw)["value"])
