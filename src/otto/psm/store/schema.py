"""Versioned schema migrations, shared by both backends.

Each migration is a list of statements in a portable SQL subset; `{seq}`
marks the transition sequence column, which differs per backend (SQLite's
rowid is gap-free under its single writer; PostgreSQL takes numbers from a
counter row locked until commit, since its sequences leave gaps on rollback).
Migrations run on start, each in its own transaction, and are recorded in
`schema_version`.
"""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE pipelines (
            uuid TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            state TEXT NOT NULL,
            status TEXT,
            repo TEXT,
            ref TEXT,
            sha TEXT,
            abort_requested INTEGER NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX pipelines_created ON pipelines (created_at, uuid)",
        "CREATE INDEX pipelines_repo ON pipelines (repo, ref)",
        """CREATE TABLE commits (
            repo TEXT NOT NULL,
            sha TEXT NOT NULL,
            pipeline TEXT NOT NULL,
            PRIMARY KEY (repo, sha)
        )""",
        """CREATE TABLE batches (
            pipeline TEXT NOT NULL,
            idx INTEGER NOT NULL,
            mode TEXT NOT NULL,
            state TEXT NOT NULL,
            status TEXT,
            PRIMARY KEY (pipeline, idx)
        )""",
        """CREATE TABLE contexts (
            uuid TEXT PRIMARY KEY,
            pipeline TEXT NOT NULL,
            batch INTEGER NOT NULL,
            position INTEGER NOT NULL,
            name TEXT NOT NULL,
            state TEXT NOT NULL,
            orchestrator TEXT,
            attempt INTEGER NOT NULL DEFAULT 0,
            lease_epoch INTEGER NOT NULL DEFAULT 0,
            lease_expires DOUBLE PRECISION,
            started_at DOUBLE PRECISION,
            finished_at DOUBLE PRECISION
        )""",
        "CREATE INDEX contexts_batch ON contexts (pipeline, batch, position)",
        "CREATE INDEX contexts_lease ON contexts (lease_expires)",
        """CREATE TABLE steps (
            uuid TEXT PRIMARY KEY,
            context TEXT NOT NULL,
            position INTEGER NOT NULL,
            symbol TEXT NOT NULL,
            state TEXT NOT NULL,
            exit_code INTEGER,
            started_at DOUBLE PRECISION,
            finished_at DOUBLE PRECISION
        )""",
        "CREATE INDEX steps_context ON steps (context, position)",
        """CREATE TABLE transitions (
            {seq},
            pipeline TEXT NOT NULL,
            entity TEXT NOT NULL,
            id TEXT NOT NULL,
            from_state TEXT,
            to_state TEXT NOT NULL,
            status TEXT,
            reason TEXT,
            actor TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            data TEXT
        )""",
        "CREATE INDEX transitions_pipeline ON transitions (pipeline, seq)",
    ],
    [
        # Why a run was aborted (user_abort, superseded, …), and anything to say with it.
        "ALTER TABLE pipelines ADD COLUMN abort_reason TEXT",
        "ALTER TABLE pipelines ADD COLUMN abort_data TEXT",
    ],
    [
        # Where a run came from, for people: its project, what triggered it, the commit message.
        "ALTER TABLE pipelines ADD COLUMN project TEXT",
        "ALTER TABLE pipelines ADD COLUMN trigger TEXT",
        "ALTER TABLE pipelines ADD COLUMN message TEXT",
        "CREATE INDEX pipelines_project ON pipelines (project, created_at)",
    ],
    [
        # The contexts that wait for an orchestrator, for every auction round: without it a
        # round reads every context ever stored. (Its condition is a literal so that both
        # backends can match it to the query's.)
        "CREATE INDEX contexts_open ON contexts (pipeline, batch, position)"
        " WHERE state = 'Pending' AND orchestrator IS NULL",
    ],
    [
        # What a POST /v1/pipelines with an Idempotency-Key answered, written in the same
        # transaction as the run it created: a retry after a crash gets that answer again.
        """CREATE TABLE idempotency_keys (
            idem_key TEXT PRIMARY KEY,
            fingerprint TEXT NOT NULL,
            pipeline TEXT NOT NULL,
            duplicate INTEGER NOT NULL,
            created_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)",
    ],
    [
        # Why a run was refused at creation (config_error: its Ottofile does not parse or
        # calls a step wrongly) and what to say ({"message": …}), for every list and page.
        "ALTER TABLE pipelines ADD COLUMN rejected_reason TEXT",
        "ALTER TABLE pipelines ADD COLUMN rejected_data TEXT",
        # Runs refused before these columns: their reason and message are in the log.
        "UPDATE pipelines SET"
        " rejected_reason = (SELECT t.reason FROM transitions t WHERE t.pipeline = pipelines.uuid"
        " AND t.entity = 'pipeline' AND t.from_state = 'Pending' AND t.to_state = 'Complete'),"
        " rejected_data = (SELECT t.data FROM transitions t WHERE t.pipeline = pipelines.uuid"
        " AND t.entity = 'pipeline' AND t.from_state = 'Pending' AND t.to_state = 'Complete')"
        " WHERE state = 'Complete' AND NOT EXISTS"
        " (SELECT 1 FROM batches b WHERE b.pipeline = pipelines.uuid)",
    ],
    [
        # When a run's last retry started it again: its duration counts from there.
        "ALTER TABLE pipelines ADD COLUMN retried_at DOUBLE PRECISION",
    ],
    [
        # A stage's timeout (seconds; NULL: the server's default_stage_timeout) and, while
        # it runs, its deadline: stored, so that a restart does not forget it.
        "ALTER TABLE contexts ADD COLUMN stage_timeout DOUBLE PRECISION",
        "ALTER TABLE contexts ADD COLUMN deadline DOUBLE PRECISION",
        "CREATE INDEX contexts_deadline ON contexts (deadline)",
    ],
    [
        # Every request a forge's webhook endpoint answered, refused ones too, and what
        # became of it: GET /v1/webhooks/deliveries (otto.webhooks.inbox keeps the latest).
        """CREATE TABLE webhook_received (
            id TEXT PRIMARY KEY,
            received_at DOUBLE PRECISION NOT NULL,
            forge TEXT NOT NULL,
            event TEXT NOT NULL,
            delivery TEXT NOT NULL,
            verdict TEXT NOT NULL,
            status INTEGER NOT NULL,
            reason TEXT NOT NULL,
            project TEXT,
            pipeline TEXT
        )""",
        "CREATE INDEX webhook_received_at ON webhook_received (received_at)",
        "CREATE INDEX webhook_received_delivery ON webhook_received (delivery)",
    ],
    [
        # The webhooks' deliveries (the redelivery guard and the push queue) and the runs
        # they created, and the outbox with its cursor (otto.webhooks.inbox and .outbox).
        # Earlier releases created these tables themselves on start, hence IF NOT EXISTS:
        # their databases keep the tables and rows they have.
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
    ],
    [
        # The commit a run's workspaces start from (a push's, unless its project said
        # `checkout: false`), handed out with every claim of its contexts.
        "ALTER TABLE pipelines ADD COLUMN checkout_url TEXT",
        "ALTER TABLE pipelines ADD COLUMN checkout_sha TEXT",
        "ALTER TABLE pipelines ADD COLUMN checkout_branch TEXT",
        # Runs created before: the webhooks recorded their commit beside them.
        "UPDATE pipelines SET"
        " checkout_url = (SELECT w.clone_url FROM webhook_runs w"
        " WHERE w.pipeline = pipelines.uuid),"
        " checkout_sha = (SELECT w.sha FROM webhook_runs w WHERE w.pipeline = pipelines.uuid),"
        " checkout_branch = (SELECT CASE"
        " WHEN w.ref LIKE 'refs/heads/%' THEN SUBSTR(w.ref, 12)"
        " WHEN w.ref LIKE 'refs/tags/%' THEN SUBSTR(w.ref, 11) END"
        " FROM webhook_runs w WHERE w.pipeline = pipelines.uuid)"
        " WHERE uuid IN (SELECT pipeline FROM webhook_runs WHERE checkout <> 0)",
    ],
    [
        # What kind of trigger started a run (push, tag, pull_request, manual, schedule)
        # and what it said (a PR's number, branches and fork; a tag; a late schedule).
        "ALTER TABLE pipelines ADD COLUMN event TEXT",
        "ALTER TABLE pipelines ADD COLUMN trigger_data TEXT",
        "UPDATE pipelines SET event = 'push' WHERE trigger LIKE 'push%'",
    ],
    [
        # When the janitor removed a run's logs and artifacts (otto.housekeeping); the
        # run record stays. The index serves its search for completed runs by age.
        "ALTER TABLE pipelines ADD COLUMN logs_expired_at DOUBLE PRECISION",
        "CREATE INDEX pipelines_completed ON pipelines (state, updated_at)",
    ],
    [
        # Each project schedule's next due time (otto.webhooks.schedules), keyed by the
        # project and the schedule's (cron, ref, timezone): a restart neither fires one twice
        # nor forgets one missed while the server was down. `firing_due`: a due time claimed
        # whose run is not known to exist yet (started again, idempotently, until it is).
        """CREATE TABLE schedule_deadlines (
            project TEXT NOT NULL,
            schedule TEXT NOT NULL,
            cron TEXT NOT NULL,
            due_at DOUBLE PRECISION NOT NULL,
            fired_at DOUBLE PRECISION,
            firing_due DOUBLE PRECISION,
            PRIMARY KEY (project, schedule)
        )""",
    ],
    [
        # Variables a run's steps captured (`$OTTO_VARIABLES`, the control socket's
        # CaptureVariable), reported with their context's outcome: later contexts' steps
        # see them as VAR_<name>. The last context to report a name wins.
        """CREATE TABLE IF NOT EXISTS run_variables (
            pipeline TEXT NOT NULL,
            name TEXT NOT NULL,
            value TEXT NOT NULL,
            context TEXT NOT NULL,
            PRIMARY KEY (pipeline, name)
        )""",
    ],
    [
        # The credential store (otto.credentials): a value per name and scope (a project,
        # '' for every project), encrypted under a key kept outside the database.
        """CREATE TABLE credentials (
            name TEXT NOT NULL,
            scope TEXT NOT NULL,
            ciphertext TEXT NOT NULL,
            set_by TEXT NOT NULL,
            set_at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (name, scope)
        )""",
    ],
    [
        # A context's gate condition (JSON: its `source`, `ast` and the stage environment it
        # reads, `env`), NULL for most: the PSM evaluates it when the context's batch starts.
        "ALTER TABLE contexts ADD COLUMN gate_condition TEXT",
    ],
    [
        # A context's approval gates (JSON: `enter` and `exit`, each its input's message,
        # parameters and timeout), NULL for most; while it is Waiting, which one it waits
        # at (`waiting_for`) and until when (`input_deadline`, swept by the expiry).
        "ALTER TABLE contexts ADD COLUMN gate_input TEXT",
        "ALTER TABLE contexts ADD COLUMN waiting_for TEXT",
        "ALTER TABLE contexts ADD COLUMN input_deadline DOUBLE PRECISION",
        "CREATE INDEX contexts_input_deadline ON contexts (input_deadline)"
        " WHERE input_deadline IS NOT NULL",
    ],
    [
        # A hook context's trigger (JSON: `on` and `of`, as the model's `Hook`), NULL for
        # most: the PSM decides whether it runs when its hook batch starts.
        "ALTER TABLE contexts ADD COLUMN hook TEXT",
    ],
]
