"""The Pipeline State Machine: the public face of `otto.psm`.

Every method that changes anything runs as one piece of work on the store's
writer (one transaction, group-committed); reads run on snapshots.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from otto import model as pipeline_model
from otto.duration import parse_duration
from otto.limits import bounded_message, bounded_name
from otto.model import Context, Pipeline
from otto.psm import flow, views
from otto.psm.events import EventHub
from otto.psm.ledger import Cause, move, record_creation
from otto.psm.records import About, Conflict, Lease, NotFound, StaleLease, Transition
from otto.psm.states import (
    ABORTING,
    AUCTION_COMPLETED,
    AUCTION_STARTED,
    BATCH_AWARDED,
    BATCH_LIVE,
    COMPLETE,
    EXECUTING,
    HANDED_BACK,
    PENDING,
    PROVISIONING,
    RETRY,
    RUNNING,
    TERMINAL,
    Entity,
)
from otto.psm.store.base import Row, Store, Tx
from otto.redact import redact_url
from otto.serverlog import fields
from otto.status import Status

DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_STAGE_TIMEOUT = 3600.0  # seconds a stage without a `timeout` may run
# Past a stage's deadline its agent stops the running step (SIGTERM, SIGKILL after its
# kill grace of 10 s) and reports; only one that has not reported this long after is
# ended by the PSM itself.
DEADLINE_GRACE = 15.0
TIMEOUT = "timeout"  # the reason of a step or context stopped at its deadline
MODEL_CACHE = 256


log = logging.getLogger("otto.psm")
IDEMPOTENCY_TTL = 24 * 3600.0  # seconds an Idempotency-Key is remembered
CONFIG_ERROR = "config_error"  # why a run is refused at creation: its pipeline cannot run


@dataclass(frozen=True)
class Created:
    uuid: str
    duplicate: bool = False
    replayed: bool = False  # the answer to an earlier request with the same Idempotency-Key


class IdempotencyKeyReused(Conflict):
    """An Idempotency-Key already used for a different request."""


class PipelineStateMachine:
    def __init__(
        self,
        store: Store,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        default_stage_timeout: float = DEFAULT_STAGE_TIMEOUT,
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.default_stage_timeout = default_stage_timeout
        self.events = EventHub(store)
        self._models: dict[str, Pipeline] = {}
        store.on_commit = self.events.publish

    def close(self) -> None:
        self.store.close()

    # -- pipelines -------------------------------------------------------------
    def create(
        self,
        pipeline: Pipeline,
        *,
        repo: str | None = None,
        ref: str | None = None,
        sha: str | None = None,
        force: bool = False,
        actor: str = "api",
        rejected: tuple[str, str] | None = None,
        about: About | None = None,
        idempotency: tuple[str, str] | None = None,
    ) -> Created:
        """Store a pipeline and start it; a known (repo, sha) returns the existing run.

        `about` says where it came from, for people (project, trigger, commit message);
        its message is cut to `MAX_MESSAGE_BYTES`, its trigger to `MAX_NAME`.

        `idempotency=(key, fingerprint)`: the first request with `key` creates and records
        its outcome in the same transaction; a later one (a client's retry, even after a
        crash between the commit and the answer) gets that outcome back (`replayed`), or
        `IdempotencyKeyReused` when its `fingerprint` (of the request) differs.

        `rejected=(reason, message)` records a run that cannot start (e.g. its Ottofile
        does not parse or calls a step wrongly: `config_error`): it is visible, Complete
        with status Error, and has no batches (nothing of it can run, or be retried).
        """

        about = about or About()
        about = About(about.project, bounded_name(about.trigger), bounded_message(about.message))
        if rejected is not None:
            pipeline = Pipeline(uuid=pipeline.uuid)

        def work(tx: Tx) -> Created:
            if idempotency is None:
                return create(tx)
            key, fingerprint = idempotency
            row = tx.one(
                "SELECT pipeline, duplicate, fingerprint FROM idempotency_keys WHERE idem_key = ?",
                key,
            )
            if row is not None:
                if row["fingerprint"] != fingerprint:
                    message = f"Idempotency-Key {key!r} was used for another request"
                    raise IdempotencyKeyReused(message)
                return Created(row["pipeline"], bool(row["duplicate"]), replayed=True)
            created = create(tx)
            now = time.time()
            tx.run("DELETE FROM idempotency_keys WHERE created_at < ?", now - IDEMPOTENCY_TTL)
            tx.run(
                "INSERT INTO idempotency_keys (idem_key, fingerprint, pipeline, duplicate,"
                " created_at) VALUES (?, ?, ?, ?, ?)",
                key,
                fingerprint,
                created.uuid,
                int(created.duplicate),
                now,
            )
            return created

        def create(tx: Tx) -> Created:
            if repo and sha and not force:
                known = tx.one("SELECT pipeline FROM commits WHERE repo = ? AND sha = ?", repo, sha)
                if known:
                    return Created(known["pipeline"], duplicate=True)
            _insert(tx, pipeline, repo, ref, sha, about)
            cause = Cause(actor, "created")
            shown = {"repo": redact_url(repo), "ref": ref, "sha": sha}
            record_creation(tx, pipeline.uuid, cause, shown)
            if rejected is not None:
                reason, message = rejected
                tx.run(
                    "UPDATE pipelines SET rejected_reason = ?, rejected_data = ? WHERE uuid = ?",
                    reason,
                    json.dumps({"message": message}),
                    pipeline.uuid,
                )
                move(
                    tx,
                    pipeline.uuid,
                    Entity.PIPELINE,
                    pipeline.uuid,
                    PENDING,
                    COMPLETE,
                    Cause(actor, reason),
                    Status.ERROR.value,
                    data={"message": message},
                )
                return Created(pipeline.uuid)
            move(tx, pipeline.uuid, Entity.PIPELINE, pipeline.uuid, PENDING, RUNNING, cause)
            flow.start_batch(tx, pipeline.uuid, 0, cause)
            return Created(pipeline.uuid)

        created = self.store.write(work)
        if not created.duplicate and not created.replayed:
            # The auctioneer and the orchestrator want it at once: spare them reading it back.
            self._remember(pipeline)
            said = fields(
                uuid=created.uuid, source=actor, project=about.project, repo=redact_url(repo),
                ref=ref, sha=sha, rejected=rejected[0] if rejected else None,
            )  # fmt: skip
            log.info("run created", extra=said)
        return created

    def get(self, uuid: str) -> dict[str, Any]:
        return self.store.read(lambda tx: views.pipeline(tx, uuid))

    def built(self, repo: str, sha: str) -> str | None:
        """The run of commit `sha` of `repo` (what `create` dedups on), if there is one."""
        row = self.store.read(
            lambda tx: tx.one("SELECT pipeline FROM commits WHERE repo = ? AND sha = ?", repo, sha)
        )
        return None if row is None else str(row["pipeline"])

    def model(self, uuid: str) -> Pipeline:
        """A stored pipeline's model (immutable once stored, so cached)."""
        cached = self._models.get(uuid)
        if cached is None:
            row = self.store.read(lambda tx: views.pipeline_row(tx, uuid))
            cached = pipeline_model.load(json.loads(row["model"]))
            self._remember(cached)
        return cached

    def _remember(self, pipeline: Pipeline) -> None:
        if len(self._models) >= MODEL_CACHE:
            self._models.pop(next(iter(self._models)), None)
        self._models[pipeline.uuid] = pipeline

    def context_model(self, pipeline: str, context: str) -> Context:
        found = next((c for c in self.model(pipeline).contexts() if c.uuid == context), None)
        if found is None:
            raise NotFound(f"no context {context} in pipeline {pipeline}")
        return found

    def list(self, **filters: Any) -> tuple[list[dict[str, Any]], str | None]:
        return self.store.read(lambda tx: views.pipelines(tx, **filters))

    def latest_by_ref(self, project: str) -> list[dict[str, Any]]:
        """A project's newest run on each branch or tag, newest first."""
        return self.store.read(lambda tx: views.latest_by_ref(tx, project))

    def transitions(self, uuid: str) -> list[Transition]:
        return self.store.read(lambda tx: views.transitions(tx, uuid))

    def abort(
        self,
        uuid: str,
        actor: str = "api",
        reason: str = flow.USER_ABORT,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Abort a run; `reason` and `data` (e.g. superseded, by which run) go on every
        transition the abort causes."""

        def work(tx: Tx) -> None:
            run = views.pipeline_row(tx, uuid)
            if run["state"] in TERMINAL[Entity.PIPELINE]:
                raise Conflict(f"pipeline {uuid} is already {run['state']}", run["state"])
            flow.abort_pipeline(tx, uuid, Cause(actor, reason, data))

        self.store.write(work)

    def retry(self, uuid: str, actor: str = "api", every: bool = False) -> list[str]:
        """Re-run a finished run's failed, errored, aborted and skipped contexts (`every`:
        all its contexts, successful ones too)."""

        def work(tx: Tx) -> list[str]:
            run = views.pipeline_row(tx, uuid)
            if run["state"] not in TERMINAL[Entity.PIPELINE]:
                raise Conflict(f"pipeline {uuid} is still {run['state']}", run["state"])
            if run["rejected_reason"]:
                message = f"pipeline {uuid} never ran ({run['rejected_reason']}): nothing to retry"
                raise Conflict(message, run["state"])
            retried = flow.retry_pipeline(tx, uuid, Cause(actor, RETRY), every)
            if not retried:
                raise Conflict(f"pipeline {uuid} has nothing to retry", run["state"])
            return retried

        return self.store.write(work)

    # -- auctions ---------------------------------------------------------------
    def open_contexts(self) -> list[Row]:
        """Contexts of live batches that wait for an orchestrator."""
        return self.store.read(views.open_contexts)

    def award(self, context: str, orchestrator: str, actor: str = "auctioneer") -> None:
        """Hand a context to an orchestrator; when all of a batch are handed out, provision."""
        self.store.write(_award(context, orchestrator, actor))

    def award_each(
        self, awards: list[tuple[str, str]], actor: str = "auctioneer"
    ) -> list[Exception | None]:
        """`award` for each (context, orchestrator), in one commit: what each one raised."""
        works = [_award(context, orchestrator, actor) for context, orchestrator in awards]
        return [o if isinstance(o, Exception) else None for o in self.store.write_each(works)]

    def release(self, context: str, orchestrator: str) -> None:
        """An awarded orchestrator that cannot start gives the context back."""

        def work(tx: Tx) -> None:
            tx.run(
                "UPDATE contexts SET orchestrator = NULL WHERE uuid = ? AND orchestrator = ? "
                "AND state = ?",
                context,
                orchestrator,
                PENDING,
            )

        self.store.write(work)

    def release_unclaimed(self) -> int:
        """Give back every award not yet claimed: after a restart nobody holds them.

        Awards live on in orchestrators' memory only until a context is claimed; a
        server that starts again must auction such contexts anew, or they would wait
        for an orchestrator that no longer knows of them.
        """

        def work(tx: Tx) -> int:
            return tx.run(
                "UPDATE contexts SET orchestrator = NULL"
                " WHERE state = ? AND orchestrator IS NOT NULL",
                PENDING,
            )

        return self.store.write(work)

    # -- executors --------------------------------------------------------------
    def claim(self, context: str, orchestrator: str, isolation: str | None = None) -> Lease:
        """Start an attempt of an awarded context; the lease fences every later report.
        `isolation`: how its steps run (`bubblewrap`, `none`, `podman`), on record."""

        def work(tx: Tx) -> Lease:
            ctx = views.context_row(tx, context)
            batch = views.batch_row(tx, ctx["pipeline"], ctx["batch"])
            if ctx["state"] != PENDING:
                raise Conflict(f"context {context} is {ctx['state']}", ctx["state"])
            if ctx["orchestrator"] != orchestrator or batch["state"] not in BATCH_AWARDED:
                raise Conflict(f"context {context} is not awarded to {orchestrator}", ctx["state"])
            if batch["mode"] == "Linear":
                before = [
                    c
                    for c in flow.contexts_of(tx, ctx["pipeline"], ctx["batch"])
                    if c["position"] < ctx["position"]
                ]
                if any(c["state"] not in TERMINAL[Entity.CONTEXT] for c in before):
                    raise Conflict(f"context {context} waits for the one before it", PENDING)
            cause = Cause(orchestrator, "claimed")
            if batch["state"] == PROVISIONING:
                move(
                    tx,
                    ctx["pipeline"],
                    Entity.BATCH,
                    str(ctx["batch"]),
                    PROVISIONING,
                    EXECUTING,
                    cause,
                )
            epoch = ctx["lease_epoch"] + 1
            expires = time.time() + self.lease_seconds
            deadline = time.time() + (ctx["stage_timeout"] or self.default_stage_timeout)
            move(
                tx,
                ctx["pipeline"],
                Entity.CONTEXT,
                context,
                PENDING,
                RUNNING,
                cause,
                data={
                    "orchestrator": orchestrator,
                    "attempt": ctx["attempt"] + 1,
                    **({"isolation": isolation} if isolation else {}),
                },
                columns={
                    "attempt": ctx["attempt"] + 1,
                    "lease_epoch": epoch,
                    "lease_expires": expires,
                    "deadline": deadline,
                    "started_at": time.time(),
                },
            )
            return Lease(ctx["pipeline"], context, orchestrator, epoch, expires, deadline=deadline)

        return self.store.write(work)

    def lease(self, context: str, orchestrator: str, epoch: int) -> Lease:
        """The lease a remote executor names by (context, epoch), for its reports."""
        row = self.store.read(lambda tx: views.context_row(tx, context))
        return Lease(row["pipeline"], context, orchestrator, epoch, row["lease_expires"] or 0.0)

    def renew(self, lease: Lease) -> Lease:
        """Extend a lease; the answer says whether the PSM wants the context aborted."""

        def work(tx: Tx) -> Lease:
            ctx = _leased(tx, lease)
            expires = time.time() + self.lease_seconds
            tx.run("UPDATE contexts SET lease_expires = ? WHERE uuid = ?", expires, lease.context)
            return Lease(
                lease.pipeline,
                lease.context,
                lease.orchestrator,
                lease.epoch,
                expires,
                aborting=ctx["state"] == ABORTING,
                deadline=ctx["deadline"],
            )

        return self.store.write(work)

    def step_started(self, lease: Lease, step: str) -> None:
        def work(tx: Tx) -> None:
            _move_step(
                tx,
                lease,
                step,
                PENDING,
                RUNNING,
                Cause(lease.orchestrator),
                columns={"started_at": time.time()},
            )

        self.store.write(work)

    def step_finished(
        self,
        lease: Lease,
        step: str,
        exit_code: int | None = None,
        status: Status | None = None,
        reason: str | None = None,
    ) -> Status:
        """Record a step's outcome: an explicit status, or the one its exit code maps to."""
        if status is None:
            if exit_code is None:
                raise ValueError("a finished step needs an exit code or a status")
            status = Status.from_exit_code(exit_code)
        outcome = status

        def work(tx: Tx) -> Status:
            _move_step(
                tx,
                lease,
                step,
                RUNNING,
                outcome.value,
                Cause(lease.orchestrator, reason),
                data={"exit_code": exit_code},
                columns={"exit_code": exit_code, "finished_at": time.time()},
            )
            return outcome

        return self.store.write(work)

    def context_finished(self, lease: Lease, status: Status, reason: str | None = None) -> None:
        def work(tx: Tx) -> None:
            ctx = _leased(tx, lease)
            flow.finish_context(tx, ctx, status, Cause(lease.orchestrator, reason))

        self.store.write(work)

    def hand_back(self, lease: Lease) -> None:
        """Give an unfinished context back (its executor shuts down): Pending, re-auctioned."""

        def work(tx: Tx) -> None:
            ctx = _leased(tx, lease)
            if ctx["state"] != RUNNING:
                raise Conflict(f"context {lease.context} is {ctx['state']}", ctx["state"])
            flow.hand_back_context(tx, ctx, Cause(lease.orchestrator, HANDED_BACK))

        self.store.write(work)

    def fail_context(self, context: str, reason: str, actor: str) -> None:
        """Infrastructure failure before or during a run (e.g. provisioning failed): Error."""

        def work(tx: Tx) -> None:
            ctx = views.context_row(tx, context)
            if ctx["state"] in TERMINAL[Entity.CONTEXT]:
                raise Conflict(f"context {context} is already {ctx['state']}", ctx["state"])
            if views.batch_row(tx, ctx["pipeline"], ctx["batch"])["state"] not in BATCH_LIVE:
                raise Conflict(f"context {context}: its batch has not started", ctx["state"])
            flow.finish_context(tx, ctx, Status.ERROR, Cause(actor, reason))
            # It may have been the last context the auction waited for.
            _close_auction(tx, ctx["pipeline"], ctx["batch"], actor)

        self.store.write(work)

    # -- deadlines --------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When `expire_leases` next has work: a lease's end, or a running stage's deadline
        (plus `DEADLINE_GRACE`); None when no context runs."""
        row = self.store.read(
            lambda tx: tx.one(
                "SELECT MIN(lease_expires) AS due, MIN(deadline) AS deadline FROM contexts"
                " WHERE lease_expires IS NOT NULL"
            )
        )
        if row is None or row["due"] is None:
            return None
        if row["deadline"] is None:
            return float(row["due"])
        return min(float(row["due"]), row["deadline"] + DEADLINE_GRACE)

    def expire_leases(self, now: float | None = None) -> int:
        """Contexts whose lease ran out lost their agent: Error, reason `agent_lost`.

        One already being aborted ends Aborted: losing it is not a new failure (a Fanout
        batch is Failed by its cause, not Error by the sibling it was stopping).

        A running context still there `DEADLINE_GRACE` after its stage's deadline (its
        agent, which stops it at the deadline, did not report) ends Failed, reason
        `timeout`: its running step too, and its steps not run are NotRun. Its agent is
        stopped when its next lease renewal is refused."""
        moment = time.time() if now is None else now

        def work(tx: Tx) -> int:
            lost = tx.all(
                "SELECT * FROM contexts WHERE lease_expires IS NOT NULL AND lease_expires <= ?"
                " AND state IN (?, ?)",
                moment,
                RUNNING,
                ABORTING,
            )
            late = tx.all(
                "SELECT * FROM contexts WHERE deadline IS NOT NULL AND deadline <= ? AND state = ?",
                moment - DEADLINE_GRACE,
                RUNNING,
            )
            expired = 0
            for stale, why in [*((c, "agent_lost") for c in lost), *((c, TIMEOUT) for c in late)]:
                # Re-read: an earlier expiry in this loop may have moved it (Fanout: Aborting).
                ctx = views.context_row(tx, stale["uuid"])
                if ctx["state"] not in (RUNNING, ABORTING):
                    continue
                if why == TIMEOUT:
                    outcome = Status.FAILED
                else:
                    outcome = Status.ABORTED if ctx["state"] == ABORTING else Status.ERROR
                flow.finish_context(tx, ctx, outcome, Cause("psm", why))
                expired += 1
            return expired

        return self.store.write(work)


def _award(context: str, orchestrator: str, actor: str) -> Callable[[Tx], None]:
    def work(tx: Tx) -> None:
        ctx = views.context_row(tx, context)
        batch = views.batch_row(tx, ctx["pipeline"], ctx["batch"])
        if ctx["state"] != PENDING or batch["state"] not in BATCH_LIVE:
            raise Conflict(f"context {context} is not open for award", ctx["state"])
        tx.run("UPDATE contexts SET orchestrator = ? WHERE uuid = ?", orchestrator, context)
        _close_auction(tx, ctx["pipeline"], ctx["batch"], actor)

    return work


def _close_auction(tx: Tx, pipeline: str, idx: int, actor: str) -> None:
    """When no Pending context of a batch in auction waits for an orchestrator: provision."""
    batch = views.batch_row(tx, pipeline, idx)
    if batch["state"] != AUCTION_STARTED:
        return
    contexts = flow.contexts_of(tx, pipeline, idx)
    if any(c["orchestrator"] is None and c["state"] == PENDING for c in contexts):
        return
    awards = {c["uuid"]: c["orchestrator"] for c in contexts}
    cause = Cause(actor, "awarded")
    ident = str(idx)
    move(
        tx,
        pipeline,
        Entity.BATCH,
        ident,
        AUCTION_STARTED,
        AUCTION_COMPLETED,
        cause,
        data={"awards": awards},
    )
    move(tx, pipeline, Entity.BATCH, ident, AUCTION_COMPLETED, PROVISIONING, cause)


def _leased(tx: Tx, lease: Lease) -> Row:
    ctx = views.context_row(tx, lease.context)
    if ctx["state"] not in (RUNNING, ABORTING):
        raise Conflict(f"context {lease.context} is {ctx['state']}", ctx["state"])
    if ctx["lease_epoch"] != lease.epoch:
        raise StaleLease(
            f"lease epoch {lease.epoch} of context {lease.context} is stale (current "
            f"{ctx['lease_epoch']})",
            ctx["state"],
        )
    return ctx


# A step moves only while the lease it is reported under is its context's current one.
_STEP_LEASED = (
    "context IN (SELECT uuid FROM contexts WHERE uuid = ? AND lease_epoch = ? AND state IN (?, ?))"
)


def _move_step(
    tx: Tx, lease: Lease, step: str, current: str, wanted: str, cause: Cause, **extra: Any
) -> None:
    """The usual case in one guarded update; when it does not apply, say exactly why."""
    guard = (_STEP_LEASED, (lease.context, lease.epoch, RUNNING, ABORTING))
    try:
        move(tx, lease.pipeline, Entity.STEP, step, current, wanted, cause, guard=guard, **extra)
    except Conflict:
        _leased(tx, lease)
        row = views.step_row(tx, lease.context, step)
        move(tx, lease.pipeline, Entity.STEP, step, row["state"], wanted, cause, **extra)


def _insert(
    tx: Tx,
    pipeline: Pipeline,
    repo: str | None,
    ref: str | None,
    sha: str | None,
    about: About,
) -> None:
    if tx.one("SELECT uuid FROM pipelines WHERE uuid = ?", pipeline.uuid):
        raise Conflict(f"pipeline {pipeline.uuid} already exists")
    now = time.time()
    tx.run(
        "INSERT INTO pipelines (uuid, model, state, repo, ref, sha, project, trigger, message,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        pipeline.uuid,
        pipeline.to_json(),
        PENDING,
        repo,
        ref,
        sha,
        about.project,
        about.trigger,
        about.message,
        now,
        now,
    )
    if repo and sha:
        tx.run(
            "INSERT INTO commits (repo, sha, pipeline) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            repo,
            sha,
            pipeline.uuid,
        )
    tx.many(
        "INSERT INTO batches (pipeline, idx, mode, state) VALUES (?, ?, ?, ?)",
        [(pipeline.uuid, i, b.mode.value, PENDING) for i, b in enumerate(pipeline.batches)],
    )
    contexts, steps = [], []
    for b, batch in enumerate(pipeline.batches):
        for c, context in enumerate(batch.contexts):
            timeout = context.properties.get(TIMEOUT)
            seconds = parse_duration(timeout) if timeout is not None else None
            contexts.append((context.uuid, pipeline.uuid, b, c, context.name, PENDING, seconds))
            steps += [
                (s.uuid, context.uuid, i, s.symbol, PENDING) for i, s in enumerate(context.steps)
            ]
    try:
        tx.many(
            "INSERT INTO contexts (uuid, pipeline, batch, position, name, state, stage_timeout)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            contexts,
        )
        tx.many(
            "INSERT INTO steps (uuid, context, position, symbol, state) VALUES (?, ?, ?, ?, ?)",
            steps,
        )
    except Exception as exc:  # a uuid clash with another stored pipeline
        if "UNIQUE" in str(exc).upper() or "duplicate key" in str(exc):
            raise Conflict("a context or step uuid of this model is already in use") from None
        raise
