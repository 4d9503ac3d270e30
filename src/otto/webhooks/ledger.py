"""The webhooks' own tables in the PSM's database: deliveries and the runs they created.

`webhook_deliveries` is both the redelivery guard (`X-GitHub-Delivery` is its
key) and a durable queue: a push is acknowledged once its row is committed,
and the worker takes `queued` rows, so a restart loses no push.
`webhook_runs` says which project (and GitHub repository) a pipeline came
from: the worker writes it *before* creating the pipeline, so the status
reporter and the orchestrator's checkout always find it.

The pipeline's own `repo` column holds the clone URL (the PSM dedups on
(repo, sha): the same commit pushed to two branches runs once).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from otto.psm.store.base import Store, Tx

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS webhook_deliveries (
        id TEXT PRIMARY KEY,
        event TEXT NOT NULL,
        project TEXT,
        state TEXT NOT NULL,
        push TEXT,
        note TEXT,
        pipeline TEXT,
        received_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS webhook_deliveries_state ON webhook_deliveries (state)",
    """CREATE TABLE IF NOT EXISTS webhook_runs (
        pipeline TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        full_name TEXT,
        clone_url TEXT NOT NULL,
        ref TEXT NOT NULL,
        sha TEXT NOT NULL,
        checkout INTEGER NOT NULL
    )""",
]

QUEUED, DONE, IGNORED = "queued", "done", "ignored"


@dataclass(frozen=True)
class Push:
    """What a push delivery leaves for the worker (not the whole payload)."""

    delivery: str
    project: str
    ref: str
    sha: str
    clone_url: str
    full_name: str | None
    message: str | None = None  # the head commit's first line
    pusher: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> Push:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class RunInfo:
    pipeline: str
    project: str
    full_name: str | None
    clone_url: str
    ref: str
    sha: str
    checkout: bool


class Ledger:
    def __init__(self, store: Store) -> None:
        self.store = store
        store.write(lambda tx: [tx.run(sql) for sql in SCHEMA])

    def record(
        self, delivery: str, event: str, project: str | None, push: Push | None, note: str = ""
    ) -> bool:
        """Record a delivery; False if that id was seen before (a redelivery)."""

        def work(tx: Tx) -> bool:
            if tx.one("SELECT id FROM webhook_deliveries WHERE id = ?", delivery):
                return False
            state, body = (QUEUED, push.to_json()) if push else (IGNORED, None)
            tx.run(
                "INSERT INTO webhook_deliveries (id, event, project, state, push, note,"
                " received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                *(delivery, event, project, state, body, note or None, time.time()),
            )
            return True

        return self.store.write(work)

    def queued(self) -> list[Push]:
        rows = self.store.read(
            lambda tx: tx.all(
                "SELECT push FROM webhook_deliveries WHERE state = ? ORDER BY received_at", QUEUED
            )
        )
        return [Push.from_json(r["push"]) for r in rows]

    def finish(self, delivery: str, note: str, pipeline: str | None = None) -> None:
        self.store.write(
            lambda tx: tx.run(
                "UPDATE webhook_deliveries SET state = ?, note = ?, pipeline = ? WHERE id = ?",
                *(DONE, note, pipeline, delivery),
            )
        )

    def add_run(self, run: RunInfo) -> None:
        self.store.write(
            lambda tx: tx.run(
                "INSERT INTO webhook_runs"
                " (pipeline, project, full_name, clone_url, ref, sha, checkout)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                *(run.pipeline, run.project, run.full_name, run.clone_url, run.ref, run.sha),
                int(run.checkout),
            )
        )

    def drop_run(self, pipeline: str) -> None:
        self.store.write(lambda tx: tx.run("DELETE FROM webhook_runs WHERE pipeline = ?", pipeline))

    def run(self, pipeline: str) -> RunInfo | None:
        row = self.store.read(
            lambda tx: tx.one("SELECT * FROM webhook_runs WHERE pipeline = ?", pipeline)
        )
        return None if row is None else _run(row)


def _run(row: Any) -> RunInfo:
    return RunInfo(
        row["pipeline"],
        row["project"],
        row["full_name"],
        row["clone_url"],
        row["ref"],
        row["sha"],
        bool(row["checkout"]),
    )
