"""Where Otto keeps its state, and how it listens: defaults, environment, flags.

Precedence: command-line flag > environment variable > default. The
defaults are the embedded mode: everything under `$OTTO_HOME` (`./.otto`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 7670


@dataclass(frozen=True)
class Settings:
    home: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    db: str = ""  # a SQLite path or a postgresql:// URL; default $OTTO_HOME/otto.db
    objects: str = ""  # an object-store URL; default $OTTO_HOME/objects
    lease_seconds: float = 30.0
    concurrency: int = 0  # contexts the local orchestrator runs at once; 0: 2 × cores
    auction_window: float = 0.05  # seconds an auction waits for bids

    @property
    def db_url(self) -> str:
        return self.db or str(self.home / "otto.db")

    @property
    def objects_url(self) -> str:
        return self.objects or str(self.home / "objects")

    @property
    def workspaces(self) -> Path:
        return self.home / "workspaces"

    @property
    def local_capacity(self) -> int:
        return self.concurrency or 2 * (os.cpu_count() or 1)


def load_settings(
    home: str | None = None,
    host: str | None = None,
    port: int | None = None,
    db: str | None = None,
) -> Settings:
    env = os.environ
    return Settings(
        home=Path(home or env.get("OTTO_HOME") or ".otto").absolute(),
        host=host or env.get("OTTO_HOST", "127.0.0.1"),
        port=port or int(env.get("OTTO_PORT", DEFAULT_PORT)),
        db=db or env.get("OTTO_DB", ""),
        objects=env.get("OTTO_OBJECTS", ""),
        lease_seconds=float(env.get("OTTO_LEASE_SECONDS", 30.0)),
        concurrency=int(env.get("OTTO_CONCURRENCY", 0)),
        auction_window=float(env.get("OTTO_AUCTION_WINDOW", 0.05)),
    )
