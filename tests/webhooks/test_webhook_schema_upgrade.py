"""A database made by the release before the webhooks' tables became versioned migrations
opens with this code on SQLite and PostgreSQL: its rows are kept and every part works on.

That release ran the PSM's first nine migrations, then the inbox and the outbox created
their own tables on start with `CREATE TABLE IF NOT EXISTS` (copied here as it was)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

from otto.model import Batch, BatchMode, Context, Pipeline, Step
from otto.psm import PipelineStateMachine
from otto.psm.store.schema import MIGRATIONS
from otto.webhooks.inbox import CREATED, QUEUED, REDELIVERY, Inbox, Push, Received, RunInfo
from otto.webhooks.outbox import PENDING, Entry, Outbox

RELEASE_VERSION = 9  # the schema version of the release that created the tables itself

RELEASE_WEBHOOK_TABLES = [
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
    """CREATE TABLE IF NOT EXISTS outbound_deliveries (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        event TEXT NOT NULL,
        project TEXT NOT NULL,
        pipeline TEXT,
        seq BIGINT NOT NULL,
        url TEXT NOT NULL,
        lane TEXT NOT NULL,
        ordered INTEGER NOT NULL,
        auth_env TEXT,
        body TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at DOUBLE PRECISION,
        last_code INTEGER,
        last_error TEXT,
        replay_of TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS outbound_due ON outbound_deliveries (state, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS outbound_lane ON outbound_deliveries (lane, state, seq)",
    "CREATE INDEX IF NOT EXISTS outbound_created ON outbound_deliveries (created_at, seq, id)",
    """CREATE TABLE IF NOT EXISTS outbound_cursor (
        name TEXT PRIMARY KEY,
        seq BIGINT NOT NULL
    )""",
]

OLD_PUSH = Push("d-old", "app", "refs/heads/main", "a" * 40, "git://h/app.git", "acme/app")
OLD_RUN = RunInfo("p-old", "app", "acme/app", "git://h/app.git", "refs/heads/main", "b" * 40, True)
OLD_ENTRY = Entry(
    "status", "status.pending", "app", "p-old", 3, "http://127.0.0.1:9/s", "s", True, None, "{}"
)


def release_rows() -> list[tuple[str, tuple[Any, ...]]]:
    """What the release's inbox and outbox left: a queued push, a run, a pending status
    and the cursor."""
    at = time.time() - 60
    e = OLD_ENTRY
    # fmt: off
    return [
        (
            "INSERT INTO webhook_deliveries (id, event, project, state, push, note, pipeline,"
            " received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (OLD_PUSH.delivery, "push", "app", QUEUED, OLD_PUSH.to_json(), None, None, at),
        ),
        (
            "INSERT INTO webhook_runs (pipeline, project, full_name, clone_url, ref, sha,"
            " checkout) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (OLD_RUN.pipeline, "app", "acme/app", OLD_RUN.clone_url, OLD_RUN.ref, OLD_RUN.sha, 1),
        ),
        (
            "INSERT INTO outbound_deliveries (id, kind, event, project, pipeline, seq, url, lane,"
            " ordered, auth_env, body, state, attempts, next_attempt_at, replay_of, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (e.id, e.kind, e.event, e.project, e.pipeline, e.seq, e.url, e.lane, 1, None,
             e.body, PENDING, 0, at, None, at, at),
        ),
        ("INSERT INTO outbound_cursor (name, seq) VALUES (?, ?)", ("outbound", 3)),
    ]
    # fmt: on


def build_release_sqlite(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    for version, statements in enumerate(MIGRATIONS[:RELEASE_VERSION], 1):
        conn.execute("BEGIN IMMEDIATE")
        for sql in statements:
            conn.execute(sql.replace("{seq}", "seq INTEGER PRIMARY KEY"))
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        conn.execute("COMMIT")
    for sql in RELEASE_WEBHOOK_TABLES:
        conn.execute(sql)
    for sql, params in release_rows():
        conn.execute(sql, params)
    conn.close()


def build_release_postgres(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn) as conn, conn.transaction():
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        for version, statements in enumerate(MIGRATIONS[:RELEASE_VERSION], 1):
            for sql in statements:
                conn.execute(sql.replace("{seq}", "seq BIGINT PRIMARY KEY"))  # type: ignore[arg-type]
            if version == 1:
                conn.execute("CREATE TABLE seq_counter (value BIGINT NOT NULL)")
                conn.execute("INSERT INTO seq_counter VALUES (0)")
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        for sql in RELEASE_WEBHOOK_TABLES:
            conn.execute(sql)  # type: ignore[arg-type]
        for sql, params in release_rows():
            conn.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]


def one_context_pipeline() -> Pipeline:
    ctx = Context(properties={"name": "build"})
    ctx.steps = [Step(context=ctx.uuid, symbol="sh", parameters=["true"])]
    return Pipeline(batches=[Batch(mode=BatchMode.LINEAR, contexts=[ctx])])


def test_a_release_database_keeps_its_webhook_rows_and_works_on(
    backend: str, store_url: str, open_psm: Callable[..., PipelineStateMachine]
) -> None:
    if backend == "sqlite":
        build_release_sqlite(store_url)
    else:
        build_release_postgres(store_url)

    psm = open_psm()
    version = psm.store.read(lambda tx: tx.one("SELECT MAX(version) AS v FROM schema_version"))
    assert version["v"] == len(MIGRATIONS) > RELEASE_VERSION
    inbox, outbox = Inbox(psm.store), Outbox(psm.store, start=99)

    # The release's rows are all there.
    assert inbox.queued() == [OLD_PUSH]
    assert inbox.run(OLD_RUN.pipeline) == OLD_RUN
    assert outbox.cursor() == 3  # not the new start: the cursor was kept
    kept = outbox.get(OLD_ENTRY.id)
    assert kept is not None and (kept.state, kept.seq, kept.ordered) == (PENDING, 3, True)

    # And the code goes on with them: the queued push is finished, its redelivery is
    # recognised, a new run is recorded, and the old status is sent before a new one.
    created = psm.create(one_context_pipeline(), repo=OLD_PUSH.clone_url, sha=OLD_PUSH.sha)
    run = RunInfo(created.uuid, "app", "acme/app", OLD_PUSH.clone_url, OLD_PUSH.ref, "c" * 40, True)
    inbox.add_run(run)
    assert inbox.run(created.uuid) == run
    inbox.finish(OLD_PUSH.delivery, CREATED, "", created.uuid)
    assert inbox.queued() == []
    redelivery = Received("github", "push", OLD_PUSH.delivery, QUEUED, 202, project="app")
    again = inbox.record(redelivery, OLD_PUSH)
    assert (again.verdict, again.pipeline) == (REDELIVERY, created.uuid)
    newer = Entry(
        "status", "status.success", "app", created.uuid, 8, OLD_ENTRY.url, "s", True, None, "{}"
    )
    outbox.enqueue([newer], upto=8)
    now = time.time() + 1
    assert [d.id for d in outbox.claim(now, busy=set())] == [OLD_ENTRY.id]
    outbox.finish(OLD_ENTRY.id, 1, 201, None, None, delivered=True)
    assert [d.id for d in outbox.claim(now, busy=set())] == [newer.id]
    assert outbox.cursor() == 8
