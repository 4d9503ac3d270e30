"""The webhooks' inbox: the deliveries forges sent and the runs they created, kept in
the PSM's database.

`webhook_deliveries` is both the redelivery guard (`X-GitHub-Delivery` is its
key) and a durable queue: a push is acknowledged once its row is committed,
and the worker takes `queued` rows, so a restart loses no push.
`webhook_runs` says which project (and GitHub repository) a pipeline came
from: the worker writes it *before* creating the pipeline, so the status
reporter and the orchestrator's checkout always find it.
`webhook_received` lists every request a forge hook answered, refused ones too,
with its verdict and run, for `GET /v1/webhooks/deliveries`; it keeps the latest
`KEEP_RECEIVED`. All three are versioned migrations (`otto.psm.store.schema`).

The pipeline's own `repo` column holds the clone URL (the PSM dedups on
(repo, sha): the same commit pushed to two branches runs once).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from otto.psm.store.base import Store, Tx

QUEUED, DONE, IGNORED = "queued", "done", "ignored"
# What became of a received delivery (`webhook_received.verdict`); QUEUED and IGNORED too.
REFUSED, REDELIVERY, BUILT, CREATED = "refused", "redelivery", "built", "created"
ABORTED = "aborted"  # a closed pull request: its runs were aborted
KEEP_RECEIVED = 10_000  # rows of webhook_received kept, the latest
PRUNE_EVERY = 100  # received rows between two prunings


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
    event: str = "push"  # the kind of trigger (`otto.psm.EVENTS`), recorded with the run
    details: dict[str, Any] | None = None  # what it said (`About.details`)
    # Runs even when its commit already ran: a tag push, a pull request's (unless the
    # project says `dedup_pull_requests`); a pull request's closing aborts its runs.
    force: bool = False

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> Push:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Received:
    """A request a forge hook answered, and its verdict: `refused` (4xx), `ignored`,
    `redelivery` (a delivery id seen before), `built` (the commit has a run already),
    `queued` (then `created`, `built` when the worker finds the commit's run, or
    `aborted`: a pull request closed, its runs aborted)."""

    forge: str
    event: str
    delivery: str
    verdict: str
    status: int  # the HTTP status answered
    reason: str = ""  # why: the error's message, why it is ignored, a rejected run's error
    project: str | None = None
    pipeline: str | None = None  # the run it created, or the existing one
    received_at: float = 0.0
    id: str = ""

    def stamped(self) -> Received:
        return replace(self, id=uuid.uuid4().hex, received_at=time.time())


@dataclass(frozen=True)
class RunInfo:
    pipeline: str
    project: str
    full_name: str | None
    clone_url: str
    ref: str
    sha: str
    checkout: bool


class Inbox:
    def __init__(
        self, store: Store, keep: int = KEEP_RECEIVED, prune_every: int = PRUNE_EVERY
    ) -> None:
        self.store = store
        self.keep, self.prune_every = keep, prune_every
        self._count = 0

    def record(self, received: Received, push: Push | None) -> Received:
        """Record a delivery (queued when `push` is given) with how it was received, in one
        transaction. A redelivery (an id seen before) is recorded as `redelivery`, and
        what it returns names the run the first delivery came to, if any."""
        entry = received.stamped()

        def work(tx: Tx) -> Received:
            seen = tx.one(
                "SELECT pipeline, note FROM webhook_deliveries WHERE id = ?", entry.delivery
            )
            if seen is not None:
                again = replace(entry, verdict=REDELIVERY, status=200, pipeline=seen["pipeline"])
                _insert_received(tx, replace(again, reason=seen["note"] or ""))
                return again
            state = QUEUED if push else DONE if entry.pipeline else IGNORED
            tx.run(
                "INSERT INTO webhook_deliveries (id, event, project, state, push, note,"
                " pipeline, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                *(entry.delivery, entry.event, entry.project, state),
                *(push.to_json() if push else None, entry.reason or None, entry.pipeline),
                entry.received_at,
            )
            _insert_received(tx, entry)
            return entry

        return self._received(work)

    def refused(self, received: Received) -> None:
        """Note a refused request (it is no delivery: a later, valid one may have its id)."""
        self._received(lambda tx: _insert_received(tx, received.stamped()))

    def _received(self, work: Any) -> Any:
        self._count += 1
        if self._count % self.prune_every:
            return self.store.write(work)

        def pruned(tx: Tx) -> Any:
            tx.run(
                "DELETE FROM webhook_received WHERE received_at < (SELECT MIN(received_at) FROM"
                " (SELECT received_at FROM webhook_received ORDER BY received_at DESC LIMIT ?)"
                " AS newest)",
                self.keep,
            )
            return work(tx)

        return self.store.write(pruned)

    def received(self, limit: int) -> list[Received]:
        """The latest `limit` requests the hooks answered, newest first."""
        rows = self.store.read(
            lambda tx: tx.all(
                "SELECT * FROM webhook_received ORDER BY received_at DESC, id LIMIT ?", limit
            )
        )
        return [Received(**{k: row[k] for k in RECEIVED_COLUMNS}) for row in rows]

    def queued(self) -> list[Push]:
        rows = self.store.read(
            lambda tx: tx.all(
                "SELECT push FROM webhook_deliveries WHERE state = ? ORDER BY received_at", QUEUED
            )
        )
        return [Push.from_json(r["push"]) for r in rows]

    def still_queued(self, delivery: str) -> bool:
        """Whether a push is still to be handled (not by another replica meanwhile)."""
        row = self.store.read(
            lambda tx: tx.one("SELECT state FROM webhook_deliveries WHERE id = ?", delivery)
        )
        return row is not None and row["state"] == QUEUED

    def finish(
        self, delivery: str, verdict: str, reason: str = "", pipeline: str | None = None
    ) -> None:
        """A queued delivery is done: it `created` `pipeline`, found the commit `built`, or
        is `ignored` after all."""

        def work(tx: Tx) -> None:
            tx.run(
                "UPDATE webhook_deliveries SET state = ?, note = ?, pipeline = ? WHERE id = ?",
                *(DONE, reason or verdict, pipeline, delivery),
            )
            tx.run(
                "UPDATE webhook_received SET verdict = ?, reason = ?, pipeline = ?"
                " WHERE delivery = ? AND verdict = ?",
                *(verdict, reason, pipeline, delivery, QUEUED),
            )

        self.store.write(work)

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


RECEIVED_COLUMNS = (
    "forge", "event", "delivery", "verdict", "status", "reason", "project", "pipeline",
    "received_at", "id",
)  # fmt: skip


def _insert_received(tx: Tx, r: Received) -> None:
    tx.run(
        f"INSERT INTO webhook_received ({', '.join(RECEIVED_COLUMNS)})"
        f" VALUES ({', '.join('?' * len(RECEIVED_COLUMNS))})",
        *(getattr(r, name) for name in RECEIVED_COLUMNS),
    )
