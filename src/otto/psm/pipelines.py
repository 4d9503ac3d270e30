"""Runs as a whole: create, abort, retry, and the reads (a run, a list, its history).

Each change is one piece of work on the store's writer: the rules (`otto.psm.rules`)
decide the moves, `ledger.apply` makes them.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from otto import model as pipeline_model
from otto.limits import bounded_message, bounded_name
from otto.model import Checkout, Context, Pipeline
from otto.psm import rules, views
from otto.psm.errors import Conflict, NotFound
from otto.psm.ledger import apply, record_creation
from otto.psm.records import About, Cause, Transition, gate_trigger
from otto.psm.states import PENDING, TERMINAL, Entity, Reason
from otto.psm.store import queries
from otto.psm.store.base import Store, Tx
from otto.redact import redact_url
from otto.serverlog import fields

log = logging.getLogger("otto.psm")
MODEL_CACHE = 256
IDEMPOTENCY_TTL = 24 * 3600.0  # seconds an Idempotency-Key is remembered
CONFIG_ERROR = Reason.CONFIG_ERROR  # why a run is refused at creation: its pipeline cannot run


@dataclass(frozen=True)
class Created:
    uuid: str
    duplicate: bool = False
    replayed: bool = False  # the answer to an earlier request with the same Idempotency-Key


class IdempotencyKeyReused(Conflict):
    """An Idempotency-Key already used for a different request."""


class Pipelines:
    """The PSM's calls on whole runs (a part of `PipelineStateMachine`)."""

    store: Store
    _models: dict[str, Pipeline]

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
        checkout: Checkout | None = None,
    ) -> Created:
        """Store a pipeline and start it; a known (repo, sha) returns the existing run.

        `about` says where it came from, for people (project, trigger, commit message);
        its message is cut to `MAX_MESSAGE_BYTES`, its trigger to `MAX_NAME`.

        `idempotency=(key, fingerprint)`: the first request with `key` creates and records
        its outcome in the same transaction; a later one (a client's retry, even after a
        crash between the commit and the answer) gets that outcome back (`replayed`), or
        `IdempotencyKeyReused` when its `fingerprint` (of the request) differs.

        `checkout`: the commit its workspaces start from (a push's), handed out with every
        claim of its contexts.

        `rejected=(reason, message)` records a run that cannot start (e.g. its Ottofile
        does not parse or calls a step wrongly: `config_error`): it is visible, Complete
        with status Error, and has no batches (nothing of it can run, or be retried).
        """
        about = about or About()
        about = replace(
            about, trigger=bounded_name(about.trigger), message=bounded_message(about.message)
        )
        if rejected is not None:
            pipeline = Pipeline(uuid=pipeline.uuid)

        def work(tx: Tx) -> Created:
            if idempotency is None:
                return create(tx)
            key, fingerprint = idempotency
            row = queries.idempotency_key(tx, key)
            if row is not None:
                if row["fingerprint"] != fingerprint:
                    message = f"Idempotency-Key {key!r} was used for another request"
                    raise IdempotencyKeyReused(message)
                return Created(row["pipeline"], bool(row["duplicate"]), replayed=True)
            created = create(tx)
            queries.remember_idempotency_key(
                tx, key, fingerprint, created.uuid, created.duplicate, time.time(), IDEMPOTENCY_TTL
            )
            return created

        def create(tx: Tx) -> Created:
            if repo and sha and not force:
                known = queries.run_of_commit(tx, repo, sha)
                if known:
                    return Created(known, duplicate=True)
            now = time.time()
            queries.insert_pipeline(tx, pipeline, repo, ref, sha, about, now)
            if checkout is not None:
                queries.set_checkout(tx, pipeline.uuid, checkout)
            cause = Cause(actor, Reason.CREATED)
            shown = {"repo": redact_url(repo), "ref": ref, "sha": sha}
            record_creation(tx, pipeline.uuid, cause, shown)
            run = _new_run(pipeline, about, ref)
            if rejected is not None:
                reason, message = rejected
                queries.record_rejection(tx, pipeline.uuid, reason, message)
                apply(tx, pipeline.uuid, rules.reject(run, reason, message, actor))
            else:
                apply(tx, pipeline.uuid, rules.start(run, cause, now))
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

    def abort(
        self,
        uuid: str,
        actor: str = "api",
        reason: str = Reason.USER_ABORT,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Abort a run; `reason` and `data` (e.g. superseded, by which run) go on every
        transition the abort causes."""

        def work(tx: Tx) -> None:
            row = views.pipeline_row(tx, uuid)
            if row["state"] in TERMINAL[Entity.PIPELINE]:
                raise Conflict(f"pipeline {uuid} is already {row['state']}", row["state"])
            cause = Cause(actor, reason, data)
            queries.request_abort(tx, uuid, cause)
            apply(tx, uuid, rules.abort(queries.run_state(tx, uuid), cause, time.time()))

        self.store.write(work)

    def retry(self, uuid: str, actor: str = "api", every: bool = False) -> list[str]:
        """Re-run a finished run's failed, errored, aborted and skipped contexts (`every`:
        all its contexts, successful ones too)."""

        def work(tx: Tx) -> list[str]:
            row = views.pipeline_row(tx, uuid)
            if row["state"] not in TERMINAL[Entity.PIPELINE]:
                raise Conflict(f"pipeline {uuid} is still {row['state']}", row["state"])
            if row["rejected_reason"]:
                message = f"pipeline {uuid} never ran ({row['rejected_reason']}): nothing to retry"
                raise Conflict(message, row["state"])
            run = queries.run_state(tx, uuid, gates=True)
            retried = rules.retried(run, every)
            if not retried:
                raise Conflict(f"pipeline {uuid} has nothing to retry", row["state"])
            now = time.time()
            queries.restart(tx, uuid, now)
            apply(tx, uuid, rules.retry(run, Cause(actor, Reason.RETRY), now, every))
            return retried

        return self.store.write(work)

    # -- reads -------------------------------------------------------------------
    def get(self, uuid: str) -> dict[str, Any]:
        return self.store.read(lambda tx: views.pipeline(tx, uuid))

    def built(self, repo: str, sha: str) -> str | None:
        """The run of commit `sha` of `repo` (what `create` dedups on), if there is one."""
        return self.store.read(lambda tx: queries.run_of_commit(tx, repo, sha))

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


def _new_run(pipeline: Pipeline, about: About, ref: str | None) -> rules.RunState:
    """A just-stored pipeline's states: every one Pending (no need to read them back), its
    steps left out (starting a run moves none) but for contexts with a condition, which
    its first batch may skip; what conditions read, when it has any."""
    batches = tuple(
        rules.BatchState(
            idx,
            batch.mode.value,
            PENDING,
            contexts=tuple(
                _new_context(ctx, idx, position) for position, ctx in enumerate(batch.contexts)
            ),
        )
        for idx, batch in enumerate(pipeline.batches)
    )
    gated = any(c.condition for b in batches for c in b.contexts)
    details = about.details or {}
    trigger = gate_trigger(ref, about.event, about.project, details) if gated else None
    gates = rules.GateInputs(trigger) if trigger is not None else None
    return rules.RunState(pipeline.uuid, PENDING, batches, gates=gates)


def _new_context(ctx: Context, idx: int, position: int) -> rules.ContextState:
    condition, gate_input = queries.stored_condition(ctx), queries.stored_gate_input(ctx)
    hook = queries.stored_hook(ctx)
    held = condition is not None or hook is not None  # its batch's start may skip it
    steps = tuple(rules.StepState(s.uuid, PENDING) for s in ctx.steps) if held else None
    return rules.ContextState(ctx.uuid, idx, position, PENDING, steps=steps, condition=condition,
                              gate_input=gate_input, hook=hook)  # fmt: skip
