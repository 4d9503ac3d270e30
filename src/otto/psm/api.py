"""The PSM's HTTP API: pipelines, transitions, events, and the executor calls."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from otto import model as pipeline_model
from otto.api import ApiError, Endpoint, parse_body, query_bool, query_int
from otto.limits import MAX_NAME, has_control
from otto.parser import ParseError, parse
from otto.psm import states
from otto.psm.machine import CONFIG_ERROR, IdempotencyKeyReused, PipelineStateMachine
from otto.psm.records import About, Conflict, IllegalTransition, Lease, NotFound, StaleLease
from otto.status import Status
from otto.steps.checking import check_model, check_ottofile

HEARTBEAT_SECONDS = 15.0
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Bounded fields of a new pipeline: names are shown on every page and terminal.
NAME_FIELDS = ("ref", "project", "trigger")
MAX_REPO, MAX_SHA = 2048, 128


EXECUTOR_ANSWERS = {
    200: "OK",
    404: "unknown context, step or lease",
    409: "a stale lease, or a move the state does not allow",
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreatePipeline(_Body):
    ottofile: str | None = None
    model: dict[str, Any] | None = None
    repo: str | None = None
    ref: str | None = None
    sha: str | None = None
    force: bool = False
    project: str | None = None
    trigger: str | None = None
    message: str | None = None


class ParseRequest(_Body):
    ottofile: str


class Award(_Body):
    orchestrator: str = Field(min_length=1)


class Claim(Award):
    isolation: str | None = Field(None, max_length=100)  # bubblewrap, none, podman, …


class LeaseRef(_Body):
    orchestrator: str = Field(min_length=1)
    epoch: int = Field(ge=1)


class StepFinished(LeaseRef):
    exit_code: int | None = None
    status: Status | None = None
    reason: str | None = None


class ContextFinished(LeaseRef):
    status: Status
    reason: str | None = None


_CONFLICT_CODES = {StaleLease: "stale_lease", IllegalTransition: "illegal_transition"}


def _translate(exc: NotFound | Conflict) -> ApiError:
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc))
    code = _CONFLICT_CODES.get(type(exc), "conflict")
    return ApiError(409, code, str(exc), current=exc.current)


def _parse_error(exc: ParseError) -> ApiError:
    return ApiError(
        400, "invalid_ottofile", exc.message, line=exc.line, column=exc.column, field="ottofile"
    )


def _is_plain_text(request: Request) -> bool:
    """Whether the body is `text/plain` (UTF-8: a 415 names any other charset)."""
    media, _, parameters = request.headers.get("content-type", "").partition(";")
    if media.strip().lower() != "text/plain":
        return False
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8", "us-ascii"):
            raise ApiError(
                415,
                "unsupported_media_type",
                f"a text/plain Ottofile is UTF-8, not {charset}",
                field="content-type",
            )
    return True


class PsmApi:
    def __init__(self, psm: PipelineStateMachine) -> None:
        self.psm = psm

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(
                "POST",
                "/v1/parse",
                self.parse,
                "Parse an Ottofile into a pipeline model: a JSON body {ottofile}, or the "
                "Ottofile itself as text/plain",
                ParseRequest,
                {
                    200: "the model",
                    400: "a parse error with line and column, or bad JSON",
                    415: "a body that is neither application/json nor text/plain, or text "
                    "in a charset other than UTF-8",
                },
                text_body="the Ottofile, UTF-8",
            ),
            Endpoint(
                "POST",
                "/v1/pipelines",
                self.create,
                "Create and start a pipeline",
                CreatePipeline,
                {
                    201: "created; a pipeline that calls a step wrongly (unknown, a parameter "
                    "its manifest does not take) is created Complete with status Error, reason "
                    "config_error, and never runs",
                    200: "a duplicate of a known (repo, sha); or, with an Idempotency-Key "
                    "seen before, the first request's answer (Idempotent-Replayed: true)",
                    400: "bad JSON, a bad Ottofile, a field too long (ref, project, trigger: "
                    "255; repo: 2048; sha: 128), control characters in ref, or a bad "
                    "Idempotency-Key",
                    409: "a model whose uuid is already stored",
                    422: "an invalid field or model, a pipeline with no batches, or an "
                    "Idempotency-Key used for another request",
                    503: "the database cannot be reached (store_unavailable)",
                    507: "the database's disk is full (disk_full); nothing was stored",
                },
                headers={
                    IDEMPOTENCY_HEADER: "makes retries safe: a request with a key seen before "
                    "(24 h) gets the first answer again, status and body"
                },
            ),
            Endpoint(
                "GET",
                "/v1/pipelines",
                self.list,
                "Pipelines, newest first",
                responses={200: "OK", 400: "a bad limit or cursor"},
            ),
            Endpoint(
                "GET",
                "/v1/pipelines/{uuid}",
                self.get,
                "A pipeline with every state",
                responses={200: "OK", 404: "unknown uuid"},
            ),
            Endpoint(
                "GET",
                "/v1/pipelines/{uuid}/transitions",
                self.transitions,
                "A pipeline's transitions, in order",
                responses={200: "OK", 404: "unknown uuid"},
            ),
            Endpoint(
                "POST",
                "/v1/pipelines/{uuid}/abort",
                self.abort,
                "Abort a run",
                responses={202: "abort under way", 404: "unknown uuid", 409: "already complete"},
            ),
            Endpoint(
                "POST",
                "/v1/pipelines/{uuid}/retry",
                self.retry,
                "Re-run a finished run's failed, errored, aborted and skipped contexts "
                "(?all=true: every context), each as a new attempt",
                responses={
                    202: "retrying",
                    400: "a bad all",
                    404: "unknown uuid",
                    409: "still running, or nothing to retry (a run refused at creation, "
                    "config_error, never ran)",
                },
                query={
                    "all": {
                        "description": "true: every context runs again, successful ones too",
                        "schema": {"type": "boolean", "default": False},
                    }
                },
            ),
            Endpoint(
                "GET",
                "/v1/events",
                self.events,
                "Transitions after a sequence number: JSON (from ?after=, default 0), or SSE "
                "with Accept: text/event-stream (from Last-Event-ID, else ?after=, else the "
                "present: ?after=0 asks for the whole history)",
                responses={200: "OK", 400: "a bad after, limit or Last-Event-ID"},
            ),
            Endpoint("GET", "/v1/transitions", self.table, "The allowed-transition table"),
            Endpoint(
                "GET",
                "/v1/contexts/open",
                self.open_contexts,
                "Contexts waiting for an orchestrator",
            ),
            Endpoint(
                "POST",
                "/v1/contexts/{uuid}/award",
                self.award,
                "Award a context to an orchestrator",
                Award,
                EXECUTOR_ANSWERS,
            ),
            Endpoint(
                "POST",
                "/v1/contexts/{uuid}/claim",
                self.claim,
                "Start an attempt of an awarded context; returns its lease, with the "
                "stage's deadline (Unix time) by which its steps must be stopped",
                Claim,
                EXECUTOR_ANSWERS,
            ),
            Endpoint(
                "POST",
                "/v1/contexts/{uuid}/lease",
                self.renew,
                "Renew a lease; says whether the context is to be aborted",
                LeaseRef,
                EXECUTOR_ANSWERS,
            ),
            Endpoint(
                "POST",
                "/v1/contexts/{uuid}/steps/{step}/started",
                self.step_started,
                "Report a step started",
                LeaseRef,
                EXECUTOR_ANSWERS,
            ),
            Endpoint(
                "POST",
                "/v1/contexts/{uuid}/steps/{step}/finished",
                self.step_finished,
                "Report a step's outcome",
                StepFinished,
                EXECUTOR_ANSWERS,
            ),
            Endpoint(
                "POST",
                "/v1/contexts/{uuid}/finished",
                self.context_finished,
                "Report a context's outcome",
                ContextFinished,
                EXECUTOR_ANSWERS,
            ),
        ]

    # -- pipelines -----------------------------------------------------------------
    def parse(self, request: Request) -> Response:
        text: str | bytes
        if _is_plain_text(request):
            text = request.state.body
        else:
            text = parse_body(ParseRequest, request.state.body).ottofile
        try:
            return JSONResponse(parse(text, filename="ottofile").to_dict())
        except ParseError as exc:
            raise _parse_error(exc) from None

    def create(self, request: Request) -> Response:
        body = parse_body(CreatePipeline, request.state.body)
        key = _idempotency_key(request)
        _check_fields(body)
        if (body.ottofile is None) == (body.model is None):
            raise ApiError(
                422, "invalid_request", "give exactly one of ottofile, model", field="ottofile"
            )
        try:
            if body.ottofile is not None:
                pipeline, problems = check_ottofile(body.ottofile, filename="ottofile")
            else:
                pipeline = pipeline_model.load(body.model)
                problems = check_model(pipeline)
        except ParseError as exc:
            raise _parse_error(exc) from None
        except pipeline_model.ModelError as exc:
            field = f"model.{exc.path}" if exc.path else "model"
            raise ApiError(422, "invalid_model", f"{field}: {exc.message}", field=field) from None
        if not pipeline.batches:
            field = "ottofile" if body.ottofile is not None else "model"
            raise ApiError(
                422, "empty_pipeline", f"{field}: a pipeline needs at least one stage", field=field
            )
        fingerprint = hashlib.sha256(request.state.body).hexdigest()
        try:
            created = self.psm.create(
                pipeline,
                repo=body.repo,
                ref=body.ref,
                sha=body.sha,
                force=body.force,
                about=About(body.project, body.trigger, body.message),
                idempotency=(key, fingerprint) if key else None,
                rejected=(CONFIG_ERROR, problems) if problems else None,
            )
        except IdempotencyKeyReused as exc:
            raise ApiError(
                422, "idempotency_key_reused", str(exc), field=IDEMPOTENCY_HEADER
            ) from None
        except Conflict as exc:
            raise _translate(exc) from None
        headers = {"Idempotent-Replayed": "true"} if created.replayed else None
        if created.duplicate:
            return JSONResponse({"uuid": created.uuid, "duplicate": True}, headers=headers)
        return JSONResponse({"uuid": created.uuid}, status_code=201, headers=headers)

    def list(self, request: Request) -> Response:
        q = request.query_params
        try:
            items, cursor = self.psm.list(
                state=q.get("state"),
                status=q.get("status"),
                repo=q.get("repo"),
                ref=q.get("ref"),
                project=q.get("project"),
                limit=query_int(request, "limit", 50, minimum=1),
                cursor=q.get("cursor"),
            )
        except ValueError as exc:
            raise ApiError(400, "invalid_query", str(exc), field="cursor") from None
        return JSONResponse({"pipelines": items, "next_cursor": cursor})

    def get(self, request: Request) -> Response:
        try:
            return JSONResponse(self.psm.get(request.path_params["uuid"]))
        except NotFound as exc:
            raise _translate(exc) from None

    def transitions(self, request: Request) -> Response:
        try:
            found = self.psm.transitions(request.path_params["uuid"])
        except NotFound as exc:
            raise _translate(exc) from None
        return JSONResponse({"transitions": [t.to_dict() for t in found]})

    def abort(self, request: Request) -> Response:
        try:
            self.psm.abort(request.path_params["uuid"], actor=_actor(request))
        except (NotFound, Conflict) as exc:
            raise _translate(exc) from None
        return JSONResponse({"uuid": request.path_params["uuid"], "aborting": True}, 202)

    def retry(self, request: Request) -> Response:
        uuid = request.path_params["uuid"]
        every = query_bool(request, "all")
        try:
            retried = self.psm.retry(uuid, actor=_actor(request), every=every)
        except (NotFound, Conflict) as exc:
            raise _translate(exc) from None
        return JSONResponse({"uuid": uuid, "retried": retried}, 202)

    def table(self, request: Request) -> Response:
        by_reason = {reason: states.table(moves) for reason, moves in states.BY_REASON.items()}
        return JSONResponse({"transitions": states.table(), "by_reason": by_reason})

    # -- events --------------------------------------------------------------------
    async def events(self, request: Request) -> Response:
        after = query_int(request, "after", 0)
        pipeline = request.query_params.get("pipeline")
        if "text/event-stream" in request.headers.get("accept", ""):
            last = request.headers.get("last-event-id")
            if last is None and "after" not in request.query_params:
                # A live view starts now: replaying all history to every subscriber that did
                # not ask for it costs the server without bound (?after=0 asks for it).
                after = self.psm.events.last_seq
            if last is not None:
                try:
                    after = int(last)
                except ValueError:
                    raise ApiError(400, "invalid_header", "Last-Event-ID: not an integer") from None
            return StreamingResponse(
                self._sse(after, pipeline),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        limit = query_int(request, "limit", 1000, minimum=1)
        found = self.psm.events.after(after, limit=min(limit, 10_000), pipeline=pipeline)
        return JSONResponse({"events": [t.to_dict() for t in found]})

    async def _sse(self, after: int, pipeline: str | None) -> AsyncIterator[bytes]:
        hub = self.psm.events
        cursor = after
        yield b"retry: 1000\n\n"
        while True:
            batch = hub.encoded_after(cursor, pipeline=pipeline)
            if batch:
                yield b"".join(
                    b"id: %d\nevent: transition\ndata: %s\n\n" % (t.seq, data) for t, data in batch
                )
                cursor = batch[-1][0].seq
                continue
            if pipeline is not None:
                cursor = max(cursor, hub.last_seq)
            if not await hub.wait_async(cursor, HEARTBEAT_SECONDS):
                yield b": keep-alive\n\n"

    # -- executors -----------------------------------------------------------------
    def open_contexts(self, request: Request) -> Response:
        return JSONResponse({"contexts": self.psm.open_contexts()})

    def award(self, request: Request) -> Response:
        body = parse_body(Award, request.state.body)
        return self._do(lambda: self.psm.award(request.path_params["uuid"], body.orchestrator))

    def claim(self, request: Request) -> Response:
        body = parse_body(Claim, request.state.body)
        return self._do(
            lambda: self.psm.claim(request.path_params["uuid"], body.orchestrator, body.isolation)
        )

    def renew(self, request: Request) -> Response:
        lease = self._lease(request, LeaseRef)
        return self._do(lambda: self.psm.renew(lease))

    def step_started(self, request: Request) -> Response:
        lease = self._lease(request, LeaseRef)
        return self._do(lambda: self.psm.step_started(lease, request.path_params["step"]))

    def step_finished(self, request: Request) -> Response:
        body = parse_body(StepFinished, request.state.body)
        if body.exit_code is None and body.status is None:
            raise ApiError(
                422,
                "invalid_request",
                "exit_code: give an exit code or a status",
                field="exit_code",
            )
        lease = self._lease(request, StepFinished, body)
        step = request.path_params["step"]
        return self._do(
            lambda: {
                "status": self.psm.step_finished(
                    lease, step, body.exit_code, body.status, body.reason
                )
            }
        )

    def context_finished(self, request: Request) -> Response:
        body = parse_body(ContextFinished, request.state.body)
        lease = self._lease(request, ContextFinished, body)
        return self._do(lambda: self.psm.context_finished(lease, body.status, body.reason))

    def _lease(self, request: Request, kind: type[LeaseRef], body: LeaseRef | None = None) -> Lease:
        ref = body or parse_body(kind, request.state.body)
        try:
            return self.psm.lease(request.path_params["uuid"], ref.orchestrator, ref.epoch)
        except NotFound as exc:
            raise _translate(exc) from None

    def _do(self, action: Any) -> Response:
        try:
            result = action()
        except (NotFound, Conflict) as exc:
            raise _translate(exc) from None
        if isinstance(result, Lease):
            return JSONResponse(result.to_dict())
        return JSONResponse(result if isinstance(result, dict) else {"ok": True})


def _check_fields(body: CreatePipeline) -> None:
    """400 naming the field: names too long or a ref with control characters (they end up
    on every page and in terminals); a message is cut instead (see `otto.limits`)."""
    for name in NAME_FIELDS:
        value = getattr(body, name)
        if value is not None and len(value) > MAX_NAME:
            message = f"{name}: at most {MAX_NAME} characters"
            raise ApiError(400, "too_long", message, field=name, limit=MAX_NAME)
    for name, limit in (("repo", MAX_REPO), ("sha", MAX_SHA)):
        value = getattr(body, name)
        if value is not None and len(value) > limit:
            message = f"{name}: at most {limit} characters"
            raise ApiError(400, "too_long", message, field=name, limit=limit)
    if body.ref is not None and has_control(body.ref):
        raise ApiError(400, "invalid_ref", "ref: no control characters", field="ref")


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= MAX_NAME or has_control(key):
        message = f"{IDEMPOTENCY_HEADER}: 1 to {MAX_NAME} characters, no control characters"
        raise ApiError(400, "invalid_header", message, field=IDEMPOTENCY_HEADER)
    return key


def _actor(request: Request) -> str:
    return request.headers.get("x-otto-actor", "api")
