"""Backends for the shared object-store suite: the filesystem, S3 (a real `moto_server`
started here on a free port) and HTTP (the real API served by uvicorn on a free port,
over a filesystem store). Every server started here is stopped here."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette

from otto.objectstore import FilesystemStore, HttpObjectStore, ObjectStore, S3Store
from otto.objectstore.routes import routes
from serverkit import free_port

LIMIT = 24 * 1024 * 1024  # room for the 20 MB round trip; size-limit tests use less
CREDENTIALS = {"access_key": "testing", "secret_key": "testing", "region": "us-east-1"}


class SwitchApp:
    """An ASGI app whose inner app each test sets, so one server serves every test."""

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


@dataclass
class HttpServer:
    url: str
    switch: SwitchApp

    def serve(self, store: ObjectStore, token: str | None = None) -> None:
        self.switch.app = Starlette(routes=routes(store, token))


@pytest.fixture(scope="session")
def http_server() -> Iterator[HttpServer]:
    switch = SwitchApp()
    port = free_port()
    config = uvicorn.Config(
        switch, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield HttpServer(f"http://127.0.0.1:{port}", switch)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@dataclass
class Backend:
    """One backend under test. `fs_root` is the directory the objects live in, for
    the filesystem backend and the HTTP one (served over a filesystem store)."""

    name: str
    make: Callable[[int], ObjectStore]
    fs_root: Path | None = None


@pytest.fixture(params=["fs", "s3", "http"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    root = tmp_path / "objects"
    opened: list[HttpObjectStore] = []
    if request.param == "fs":
        yield Backend("fs", lambda limit: FilesystemStore(root, max_object_size=limit), root)
    elif request.param == "s3":
        make_bucket = request.getfixturevalue("make_bucket")

        def make_s3(limit: int) -> ObjectStore:
            endpoint = request.getfixturevalue("moto_endpoint")
            return S3Store(
                make_bucket(),
                endpoint_url=endpoint,
                prefix="otto/objects",
                max_object_size=limit,
                **CREDENTIALS,
            )

        yield Backend("s3", make_s3)
    else:
        server: HttpServer = request.getfixturevalue("http_server")

        def make_http(limit: int) -> ObjectStore:
            server.serve(FilesystemStore(root, max_object_size=limit))
            client = HttpObjectStore(server.url)
            opened.append(client)
            return client

        yield Backend("http", make_http, root)
    for client in opened:
        client.close()


@pytest.fixture
def store(backend: Backend) -> ObjectStore:
    return backend.make(LIMIT)
