"""Fixtures of the PSM tests (the shared ones are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from psmkit import Replicas

from otto.psm import PipelineStateMachine, open_store


@pytest.fixture
def replicas(postgres_dsn: str) -> Iterator[Replicas]:
    """Two PSMs on one PostgreSQL schema, as two server replicas share one database."""
    first = PipelineStateMachine(open_store(postgres_dsn))
    second = PipelineStateMachine(open_store(postgres_dsn))
    yield first, second
    first.close()
    second.close()
