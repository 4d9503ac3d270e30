from __future__ import annotations

from pathlib import Path

import pytest

from agentkit import AgentHarness


@pytest.fixture
def harness(tmp_path: Path) -> AgentHarness:
    return AgentHarness(tmp_path)
