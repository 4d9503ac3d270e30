"""Shared fixtures: a throw-away PostgreSQL cluster and PSMs on both backends.

PostgreSQL: one cluster per test session (tests/pgkit.py), one fresh schema per
test. Without server binaries the PostgreSQL tests are skipped, unless
OTTO_REQUIRE_POSTGRES=1 (set by .ci/run), which makes that a failure.

Under pytest-xdist (`make test`) each worker is a session of its own: its own cluster,
`moto_server` and temp tree; nothing here is shared between workers.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from motokit import make_bucket, moto_endpoint  # noqa: F401 - fixtures for every folder
from pgkit import Cluster, PostgresUnavailable, throwaway_cluster

BACKENDS = ["sqlite", "postgres"]
_schemas = itertools.count(1)


def _require_postgres() -> bool:
    return os.environ.get("OTTO_REQUIRE_POSTGRES", "").strip() not in ("", "0", "false", "no")


@pytest.fixture(scope="session", autouse=True)
def steps_share_the_test_tmp_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Many tests hand files to and from their steps through their tmp dirs (gates, marks,
    pid files): for them the whole test tmp tree is a trusted read-write bind in every
    sandbox (`sandbox_binds`, as an operator would mount a shared directory). The
    isolation tests, which prove what a step cannot see, turn it off."""
    os.environ["OTTO_SANDBOX_BINDS"] = str(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster for the whole session, stopped and deleted at the end. Without
    fsync: no test crashes the cluster itself (only Otto's processes), and flushing every
    commit only made the PostgreSQL tests wait on a disk shared by parallel workers."""
    try:
        manager = throwaway_cluster(fsync=False)
        cluster = manager.__enter__()
    except PostgresUnavailable as exc:
        if _require_postgres():
            pytest.fail(f"OTTO_REQUIRE_POSTGRES is set but PostgreSQL is unavailable: {exc}")
        pytest.skip(f"PostgreSQL unavailable (set OTTO_REQUIRE_POSTGRES=1 to fail): {exc}")
    try:
        yield cluster
    finally:
        manager.__exit__(None, None, None)


@pytest.fixture
def postgres_dsn(postgres_cluster: Cluster) -> Iterator[str]:
    """A DSN whose every table lives in a fresh schema of its own (dropped afterwards)."""
    import psycopg

    schema = f"test_{os.getpid()}_{next(_schemas)}"
    admin = postgres_cluster.dsn()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    yield f"{admin}?options=-csearch_path%3D{schema}"
    with psycopg.connect(admin, autocommit=True) as conn:
        # Sessions a test left open (e.g. a killed child's) must not block the drop.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND datname = current_database() "
            "AND state = 'idle in transaction'"
        )
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """Where a store lives: a SQLite file path, or a PostgreSQL DSN with a fresh schema."""
    if backend == "sqlite":
        return str(tmp_path / "otto.db")
    return str(request.getfixturevalue("postgres_dsn"))


@pytest.fixture
def open_psm(store_url: str) -> Iterator[Callable[..., object]]:
    """Open PSMs on this test's store (`open_psm(lease_seconds=...)`, other options of
    `PipelineStateMachine` by name); all closed at the end."""
    from otto.psm import PipelineStateMachine, open_store

    opened: list[PipelineStateMachine] = []

    def open_(
        url: str | None = None, lease_seconds: float = 30.0, **options: Any
    ) -> PipelineStateMachine:
        psm = PipelineStateMachine(
            open_store(url or store_url), lease_seconds=lease_seconds, **options
        )
        opened.append(psm)
        return psm

    yield open_
    for psm in reversed(opened):
        psm.close()


@pytest.fixture
def psm(open_psm: Callable[..., object]) -> object:
    """A PipelineStateMachine on a fresh store, once per backend."""
    return open_psm()
