"""A database that cannot be reached is answered 503 `store_unavailable`, never a bare 500:
whatever psycopg raises for it, a session the server terminated included."""

from __future__ import annotations

import psycopg
import pytest

from otto.endpoints import storage_error


def test_a_terminated_session_is_store_unavailable(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn, autocommit=True) as victim:
        pid = victim.info.backend_pid
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.Error) as caught:
            victim.execute("SELECT 1")
    answer = storage_error(caught.value)
    assert answer is not None, type(caught.value)
    assert (answer.status, answer.code) == (503, "store_unavailable")


def test_a_refused_connection_is_store_unavailable(postgres_dsn: str) -> None:
    with pytest.raises(psycopg.Error) as caught:
        psycopg.connect("postgresql://nobody@127.0.0.1:1/none", connect_timeout=2)
    answer = storage_error(caught.value)
    assert answer is not None and answer.status == 503


def test_a_query_error_is_not_a_storage_error(postgres_dsn: str) -> None:
    with psycopg.connect(postgres_dsn) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute("SELECT * FROM no_such_table")
    assert storage_error(caught.value) is None
