"""The agent's side of the control socket: a small threaded HTTP server on AF_UNIX."""

from __future__ import annotations

import hmac
import json
import os
import selectors
import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from otto.agent.control import PATH
from otto.status import Status
from otto.steps.variables import MAX_NAME_LENGTH, MAX_VALUE_BYTES, VARIABLE_NAME
from otto.validation import first_error_text

MAX_BODY = 1 << 20


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _status(value: Any) -> Any:
    return Status.parse(value) if isinstance(value, str) else value


StatusName = Annotated[Status, BeforeValidator(_status)]


class SetPipelineStatus(_Message):
    type: Literal["SetPipelineStatus"]
    status: StatusName


class CaptureVariable(_Message):
    type: Literal["CaptureVariable"]
    name: str = Field(pattern=VARIABLE_NAME, max_length=MAX_NAME_LENGTH)
    value: str

    @field_validator("value")
    @classmethod
    def _fits(cls, value: str) -> str:
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise ValueError(f"a variable's value holds at most {MAX_VALUE_BYTES // 1024} KiB")
        return value


class DropVariable(_Message):
    type: Literal["DropVariable"]
    name: str = Field(pattern=VARIABLE_NAME, max_length=MAX_NAME_LENGTH)


class Terminate(_Message):
    type: Literal["Terminate"]
    status: StatusName
    reason: str | None = None


class RetrieveCredential(_Message):
    """A credential the context's stage asked for (answered as `{"value": …}`)."""

    type: Literal["RetrieveCredential"]
    name: str = Field(min_length=1, max_length=100)


ControlMessage = Annotated[
    SetPipelineStatus | CaptureVariable | DropVariable | Terminate | RetrieveCredential,
    Field(discriminator="type"),
]
_MESSAGE: TypeAdapter[ControlMessage] = TypeAdapter(ControlMessage)


class ControlRejected(Exception):
    """A message the agent refuses (e.g. nothing is running to terminate)."""


class ControlServer:
    """Serves `handle(message) -> answer` on a unix socket until `close()`.

    The socket listens from the start; the thread that answers starts with `serve()`,
    which whoever watches `fileno` calls when a connection waits (the agent, while a
    step's process runs: only steps talk to it). Most contexts never use the socket,
    and starting the thread (with its server) costs more than running `sh 'true'`."""

    def __init__(self, path: Path, token: str, handle: Callable[[Any], dict[str, Any]]) -> None:
        self.path = path
        self.token = token
        self.handle = handle
        os.makedirs(path.parent, mode=0o700, exist_ok=True)
        os.chmod(path.parent, 0o700)
        # A bare listening socket: the HTTP server around it is built by `serve()`.
        listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listening.bind(str(path))
            os.chmod(path, 0o600)
            listening.listen()
            self._wake_read, self._wake_write = os.pipe()
        except OSError:
            listening.close()
            raise
        self._socket = listening
        self._server: _UnixServer | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def fileno(self) -> int:
        """The listening socket: readable when a connection waits."""
        return self._socket.fileno()

    @property
    def serving(self) -> bool:
        return self._thread is not None

    def serve(self) -> None:
        """Answer connections from now on, in a thread of its own (once; no-op if closed)."""
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self._server = _UnixServer(self._socket, self)
            self._thread = threading.Thread(target=self._serve, name="otto control", daemon=True)
            self._thread.start()

    def _serve(self) -> None:
        assert self._server is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._socket, selectors.EVENT_READ, "request")
            selector.register(self._wake_read, selectors.EVENT_READ, "stop")
            while True:
                for key, _ in selector.select():
                    if key.data == "stop":
                        return
                    self._server.handle_request()

    def close(self) -> None:
        """Stop serving (at once: no polling interval to wait out) and remove the socket."""
        with self._lock:
            self._closed = True
        if self._thread is not None:
            os.write(self._wake_write, b"x")
            self._thread.join()
        self._socket.close()
        os.close(self._wake_read)
        os.close(self._wake_write)
        self.path.unlink(missing_ok=True)


class _UnixServer(socketserver.ThreadingUnixStreamServer):
    """Serves requests on a socket already listening."""

    daemon_threads = True
    timeout = 0  # handle_request() is only called when a connection is waiting

    def __init__(self, listening: socket.socket, control: ControlServer) -> None:
        socketserver.BaseServer.__init__(self, listening.getsockname(), _Handler)
        self.socket = listening
        self.control = control


class _Handler(BaseHTTPRequestHandler):
    server: _UnixServer
    protocol_version = "HTTP/1.1"

    @property
    def control(self) -> ControlServer:
        return self.server.control

    def do_POST(self) -> None:
        if self.path != PATH:
            return self._answer(404, error=("not_found", f"no such endpoint {self.path}"))
        auth = self.headers.get("Authorization", "")
        expected = f"Bearer {self.control.token}"
        if not hmac.compare_digest(auth.encode(), expected.encode()):
            return self._answer(401, error=("unauthorized", "missing or wrong control token"))
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            return self._answer(400, error=("bad_request", "a JSON body is required"))
        try:
            message = _MESSAGE.validate_python(json.loads(self.rfile.read(length) or b"null"))
        except ValueError as exc:
            return self._answer(400, error=("bad_request", _describe(exc)))
        try:
            answer = self.control.handle(message)
        except ControlRejected as exc:
            return self._answer(409, error=("rejected", str(exc)))
        self._answer(200, body=answer)

    def do_GET(self) -> None:
        self._answer(405, error=("method_not_allowed", "use POST"))

    def _answer(
        self, code: int, body: dict[str, Any] | None = None, error: tuple[str, str] | None = None
    ) -> None:
        if error is not None:
            body = {"error": {"code": error[0], "message": error[1]}}
        data = json.dumps(body or {}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:
        return "control-socket"

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return first_error_text(exc)
    return f"not JSON: {exc}"
