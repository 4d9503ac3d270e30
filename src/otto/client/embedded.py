"""An ephemeral `otto server` inside this process, for `otto run` without `--server`.

The same Starlette app as `otto server`, served by uvicorn in a background thread
on a free 127.0.0.1 port. The app is built by the factory it is given (`otto run`
gives `otto.server.build_app`): the client never imports the server it starts. Leaving the `with`
block shuts it down the way `otto server` does on SIGTERM: the lifespan stops
the local orchestrator (its agents with it) and closes the state store.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from otto.client.errors import ServerUnavailable
from otto.config import Settings
from otto.model import Checkout

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

# Settings and the commit every workspace starts from → the server's ASGI app.
AppFactory = Callable[[Settings, Checkout | None], "ASGIApp"]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0  # the lifespan gives running agents 10 s to stop
FORCE_TIMEOUT = 5.0


class EmbeddedServer:
    def __init__(
        self,
        settings: Settings,
        build_app: AppFactory,
        workspace_source: Checkout | None = None,
    ) -> None:
        self.settings = settings
        self.build_app = build_app
        self.workspace_source = workspace_source  # what every context's workspace starts as
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> EmbeddedServer:
        import uvicorn

        app = self.build_app(self.settings, self.workspace_source)
        # IPPROTO_TCP: asyncio sets TCP_NODELAY then (see `otto.server.listen`).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="otto-embedded", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while not server.started:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    raise ServerUnavailable("the embedded Otto server did not start")
                time.sleep(0.01)
        except BaseException:  # Ctrl-C too: never leave the server (and its agents) behind
            self._stop()
            sock.close()
            raise
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop()

    def _stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():  # a connection that would not close: stop waiting for it
            server.force_exit = True
            thread.join(FORCE_TIMEOUT)
        self._server = self._thread = None
