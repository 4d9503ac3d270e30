from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serverkit import Server, running_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with running_server(tmp_path / "home") as srv:
        yield srv
