"""Storage backends of the PSM: SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from otto.psm.store.base import Store, Tx


def open_store(url: str | Path) -> Store:
    """`postgresql://…` selects PostgreSQL; anything else is a SQLite file path."""
    text = str(url)
    if text.startswith(("postgresql://", "postgres://")):
        from otto.psm.store.postgres import PostgresStore

        return PostgresStore(text)
    from otto.psm.store.sqlite import SqliteStore

    return SqliteStore(text.removeprefix("sqlite:///").removeprefix("sqlite://"))


__all__ = ["Store", "Tx", "open_store"]
