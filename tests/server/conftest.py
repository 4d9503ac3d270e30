from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serverkit import Server, running_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    # These tests play the executor themselves: no local orchestrator competes.
    with running_server(tmp_path / "home", OTTO_LOCAL_ORCHESTRATOR="0") as srv:
        yield srv
