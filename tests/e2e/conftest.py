from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serverkit import UNSANDBOXED, Server, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real `otto server` per module, its local orchestrator running 4 contexts at once.

    Each test submits its own pipelines and looks only at those, so they cannot interfere.
    """
    home: Path = tmp_path_factory.mktemp("otto") / "home"
    with running_server(home, OTTO_CONCURRENCY="4") as srv:
        yield srv


@pytest.fixture(scope="module")
def unsandboxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Like `server`, with `sandbox: none`: for tests that follow steps' PIDs."""
    home: Path = tmp_path_factory.mktemp("otto") / "home"
    with running_server(home, OTTO_CONCURRENCY="4", **UNSANDBOXED) as srv:
        yield srv
