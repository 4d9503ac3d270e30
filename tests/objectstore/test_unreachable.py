"""A store that cannot be reached fails like any other store failure, never with httpx's."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from otto.agent.logstream import LogWriter
from otto.objectstore import FilesystemStore, HttpObjectStore, ObjectStoreError, StoreUnavailable
from serverkit import free_port

from .conftest import HttpServer


def test_an_unreachable_http_store_raises_store_unavailable() -> None:
    store = HttpObjectStore(f"http://127.0.0.1:{free_port()}", connect_retries=0)
    with pytest.raises(StoreUnavailable) as caught:
        store.get("p/c/s.log")
    assert isinstance(caught.value, ObjectStoreError)
    assert caught.value.status == 503
    with pytest.raises(StoreUnavailable):
        store.append("p/c/s.log", 0, b"x")
    store.close()


@contextmanager
def replica_that_hangs_up() -> Iterator[str]:
    """The URL of a server that accepts one request and hangs up before answering (a
    replica killed mid-request)."""
    with socket.socket() as dying:
        dying.bind(("127.0.0.1", 0))
        dying.listen()

        def hang_up() -> None:
            connection, _ = dying.accept()
            connection.recv(65536)
            connection.close()

        threading.Thread(target=hang_up, daemon=True).start()
        yield f"http://127.0.0.1:{dying.getsockname()[1]}"


def test_a_replica_that_hangs_up_mid_request_sends_the_next_request_to_another(
    http_server: HttpServer, tmp_path: Path
) -> None:
    """That request fails (whether it acted is unknown), the next one goes to the other."""
    http_server.serve(FilesystemStore(tmp_path / "objects"))
    with replica_that_hangs_up() as dying:
        store = HttpObjectStore(dying, others=[http_server.url])
        with pytest.raises(ObjectStoreError):
            store.put("p/c/s.log", b"first")
        store.put("p/c/s.log", b"again")  # to the other replica
        assert store.get("p/c/s.log") == b"again"
        store.close()


def test_an_empty_log_is_stored_past_a_replica_that_hangs_up(
    http_server: HttpServer, tmp_path: Path
) -> None:
    """A log nothing was written to is stored as an empty object when it closes; a hang-up
    costs that request only (it happened in the chaos test, failing the context)."""
    http_server.serve(FilesystemStore(tmp_path / "objects"))
    with replica_that_hangs_up() as dying:
        store = HttpObjectStore(dying, others=[http_server.url])
        logs = LogWriter(store)
        assert logs.open("p/c/context.log").close() is None
        assert store.get("p/c/context.log") == b""
        store.close()
