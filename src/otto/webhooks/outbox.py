"""The outbox: every HTTP request Otto owes someone, persisted before it is sent.

Commit statuses and outbound webhook deliveries are rows of
`outbound_deliveries`, written together with the cursor (`outbound_cursor`:
the last transition turned into rows) in one transaction, so a restart
neither loses nor repeats one. A row's id is derived from what it tells
(kind, project, URL, transition), so turning a transition into rows twice
(after a crash, or on two replicas) inserts nothing new.

A row is `pending` until it is `delivered`, or `failed` when its retries are
used up or the answer says retrying is pointless. Rows of an `ordered` lane
(the commit statuses of one commit) go one at a time, oldest first: GitHub
must not see `pending` after `success`. The sender claims due rows by moving
their next attempt a while ahead, so a replica that dies mid-send leaves
them due again, and two replicas never send one row at the same time.
Both tables are versioned migrations (`otto.psm.store.schema`).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from otto.psm.store.base import Row, Store, Tx
from otto.webhooks.mirror import without_credentials

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
STATES = (PENDING, DELIVERED, FAILED)
KINDS = ("webhook", "status")
CURSOR = "outbound"
CLAIM_SECONDS = 120.0  # how long a claimed row is left to its sender
NAMESPACE = uuid.UUID("5b3c43c8-6b0e-4a57-9f8e-0f7d1c9a2e61")
_COLUMNS = (
    "id, kind, event, project, pipeline, seq, url, lane, ordered, auth_env, body, state,"
    " attempts, next_attempt_at, replay_of, created_at, updated_at"
)
_INSERT = (
    f"INSERT INTO outbound_deliveries ({_COLUMNS})"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)


@dataclass(frozen=True)
class Entry:
    """One request a transition asks for, before it is a row."""

    kind: str  # "webhook" or "status"
    event: str  # e.g. "pipeline.Complete", "status.pending"
    project: str
    pipeline: str
    seq: int  # the transition's
    url: str
    lane: str  # requests of one lane share a destination
    ordered: bool  # one at a time, oldest first
    auth_env: str | None  # the variable holding the secret or token
    body: str

    @property
    def id(self) -> str:
        return str(uuid.uuid5(NAMESPACE, f"{self.kind}|{self.project}|{self.url}|{self.seq}"))


@dataclass(frozen=True)
class Delivery:
    """A row of the outbox."""

    id: str
    kind: str
    event: str
    project: str
    pipeline: str | None
    seq: int
    url: str
    lane: str
    ordered: bool
    auth_env: str | None
    body: str
    state: str
    attempts: int
    next_attempt_at: float | None
    last_code: int | None
    last_error: str | None
    replay_of: str | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Row) -> Delivery:
        fields = {k: row[k] for k in cls.__dataclass_fields__}
        return cls(**{**fields, "ordered": bool(row["ordered"])})


class Outbox:
    def __init__(self, store: Store, start: int) -> None:
        """`start`: where the cursor begins when there is none yet (the newest transition)."""
        self.store = store

        store.write(
            lambda tx: tx.run(
                "INSERT INTO outbound_cursor (name, seq) VALUES (?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                CURSOR,
                start,
            )
        )

    def cursor(self) -> int:
        row = self.store.read(
            lambda tx: tx.one("SELECT seq FROM outbound_cursor WHERE name = ?", CURSOR)
        )
        return int(row["seq"]) if row else 0

    def enqueue(self, entries: list[Entry], upto: int) -> None:
        """Add rows for `entries` (known ones are skipped) and move the cursor to `upto`."""
        now = time.time()
        rows = [
            (e.id, e.kind, e.event, e.project, e.pipeline, e.seq, e.url, e.lane, int(e.ordered),
             e.auth_env, e.body, PENDING, 0, now, None, now, now)
            for e in entries
        ]  # fmt: skip

        def work(tx: Tx) -> None:
            if rows:
                tx.many(_INSERT, rows)
            tx.run(
                "UPDATE outbound_cursor SET seq = ? WHERE name = ? AND seq < ?", upto, CURSOR, upto
            )

        self.store.write(work)

    def claim(self, now: float, busy: set[str], limit: int = 100) -> list[Delivery]:
        """Due rows not in a `busy` lane (of an ordered lane only its oldest pending one),
        oldest first, each now the caller's to send for CLAIM_SECONDS."""
        skip = f" AND d.lane NOT IN ({', '.join('?' * len(busy))})" if busy else ""
        query = (
            "SELECT * FROM outbound_deliveries d WHERE d.state = ? AND d.next_attempt_at <= ?"
            f"{skip} AND (d.ordered = 0 OR NOT EXISTS (SELECT 1 FROM outbound_deliveries e"
            " WHERE e.lane = d.lane AND e.state = ? AND e.seq < d.seq))"
            " ORDER BY d.seq, d.created_at LIMIT ?"
        )

        def work(tx: Tx) -> list[Delivery]:
            claimed = []
            for row in tx.all(query, PENDING, now, *sorted(busy), PENDING, limit):
                taken = tx.run(
                    "UPDATE outbound_deliveries SET next_attempt_at = ?"
                    " WHERE id = ? AND state = ? AND next_attempt_at = ?",
                    *(now + CLAIM_SECONDS, row["id"], PENDING, row["next_attempt_at"]),
                )
                if taken == 1:
                    claimed.append(Delivery.from_row(row))
            return claimed

        return self.store.write(work)

    def finish(
        self,
        delivery: str,
        attempts: int,
        code: int | None,
        error: str | None,
        retry_at: float | None,
        delivered: bool,
    ) -> None:
        """Record an attempt: delivered, or to be tried again at `retry_at`, or failed."""
        state = DELIVERED if delivered else PENDING if retry_at is not None else FAILED
        self.store.write(
            lambda tx: tx.run(
                "UPDATE outbound_deliveries SET state = ?, attempts = ?, last_code = ?,"
                " last_error = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?",
                *(state, attempts, code, error, retry_at, time.time(), delivery),
            )
        )

    def release(self, deliveries: list[str], at: float) -> None:
        """Give back claimed rows unsent: due again at `at`, no attempt counted."""
        self.store.write(
            lambda tx: tx.many(
                "UPDATE outbound_deliveries SET next_attempt_at = ? WHERE id = ? AND state = ?",
                [(at, d, PENDING) for d in deliveries],
            )
        )

    def get(self, delivery: str) -> Delivery | None:
        row = self.store.read(
            lambda tx: tx.one("SELECT * FROM outbound_deliveries WHERE id = ?", delivery)
        )
        return None if row is None else Delivery.from_row(row)

    def replay(self, delivery: str) -> Delivery | None:
        """A new pending row sending the same request again (now, at the end of its lane)."""

        def work(tx: Tx) -> Delivery | None:
            row = tx.one("SELECT * FROM outbound_deliveries WHERE id = ?", delivery)
            if row is None:
                return None
            newest = tx.one("SELECT COALESCE(MAX(seq), 0) AS seq FROM transitions")
            now = time.time()
            copy = {
                **{k: row[k] for k in Delivery.__dataclass_fields__},
                "id": str(uuid.uuid4()),
                "seq": max(int(row["seq"]), int(newest["seq"]) if newest else 0),
                "state": PENDING,
                "attempts": 0,
                "next_attempt_at": now,
                "last_code": None,
                "last_error": None,
                "replay_of": row["id"],
                "created_at": now,
                "updated_at": now,
            }
            tx.run(_INSERT, *(copy[c.strip()] for c in _COLUMNS.split(",")))
            return Delivery.from_row(copy)

        return self.store.write(work)

    def list(
        self, limit: int = 50, cursor: str | None = None, **filters: str | None
    ) -> tuple[list[Delivery], str | None]:
        """Newest first; `filters` are column = value (None: any); `cursor` goes on."""
        where, params = [], []
        for column, value in filters.items():
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if cursor:
            created, seq, ident = decode_cursor(cursor)
            where.append(
                "(created_at < ? OR (created_at = ? AND (seq < ? OR (seq = ? AND id < ?))))"
            )
            params += [created, created, seq, seq, ident]
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self.store.read(
            lambda tx: tx.all(
                f"SELECT * FROM outbound_deliveries{clause}"
                " ORDER BY created_at DESC, seq DESC, id DESC LIMIT ?",
                *params,
                limit + 1,
            )
        )
        found = [Delivery.from_row(r) for r in rows[:limit]]
        if len(rows) <= limit:
            return found, None
        last = found[-1]
        return found, encode_cursor(last.created_at, last.seq, last.id)

    def prune(self, before: float) -> int:
        """Forget delivered rows last touched before `before`."""
        return self.store.write(
            lambda tx: tx.run(
                "DELETE FROM outbound_deliveries WHERE state = ? AND updated_at < ?",
                DELIVERED,
                before,
            )
        )


def encode_cursor(created: float, seq: int, ident: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created, seq, ident]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, int, str]:
    try:
        created, seq, ident = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return float(created), int(seq), str(ident)
    except (ValueError, TypeError) as exc:
        raise ValueError("cursor: not a cursor this server gave out") from exc


def as_dict(d: Delivery) -> dict[str, Any]:
    """As `GET /v1/deliveries` shows a row."""
    from otto.psm.records import iso

    try:
        payload: Any = json.loads(d.body)
    except ValueError:
        payload = d.body
    return {
        "id": d.id,
        "kind": d.kind,
        "event": d.event,
        "project": d.project,
        "pipeline": d.pipeline,
        "seq": d.seq,
        "url": without_credentials(d.url),
        "state": d.state,
        "attempts": d.attempts,
        "next_attempt_at": iso(d.next_attempt_at) if d.state == PENDING else None,
        "last_code": d.last_code,
        "last_error": d.last_error,
        "replay_of": d.replay_of,
        "created_at": iso(d.created_at),
        "updated_at": iso(d.updated_at),
        "payload": payload,
    }
