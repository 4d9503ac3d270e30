from __future__ import annotations

from collections.abc import Iterator

import pytest

from otto.client import OttoClient
from serverkit import Server, running_server


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real `otto server` for the client tests (each test uses runs of its own)."""
    with running_server(tmp_path_factory.mktemp("client") / "home") as srv:
        yield srv


@pytest.fixture
def client(server: Server) -> Iterator[OttoClient]:
    with OttoClient(server.url) as c:
        yield c
