"""The PSM's HTTP API: pipelines, transitions, events, awards (the executors' calls are
`otto.psm.executor_routes`'s)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from otto import model as pipeline_model
from otto.endpoints import ApiError, Endpoint, parse_body, query_bool, query_int
from otto.limits import DETACH, MAX_NAME, has_control
from otto.psm import states
from otto.psm.approvals import Answer, MissingParameters
from otto.psm.errors import Conflict, NotFound
from otto.psm.events import ENTITIES, EventFilter, sse_frame
from otto.psm.executor_routes import EXECUTOR_ANSWERS, refusal
from otto.psm.fanout import HEARTBEAT_SECONDS, FanOut
from otto.psm.machine import PipelineStateMachine
from otto.psm.pipelines import CONFIG_ERROR, IdempotencyKeyReused
from otto.psm.records import About

IDEMPOTENCY_HEADER = "Idempotency-Key"
# Bounded fields of a new pipeline: names are shown on every page and terminal.
NAME_FIELDS = ("ref", "project", "trigger")
MAX_REPO, MAX_SHA = 2048, 128
MAX_COMMENT, MAX_PARAM, MAX_PARAMS = 2000, 4096, 64  # an answer to an approval gate


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


class AnswerInput(_Body):
    """An answer to a Waiting context's input: who gives it (`by`), why (`comment`), and
    (approving) a value for each parameter the input asks for (`params`)."""

    by: str = Field("api", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$")
    comment: str | None = Field(None, max_length=MAX_COMMENT)
    params: dict[
        Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=MAX_NAME)],
        Annotated[str, Field(max_length=MAX_PARAM)],
    ] = Field(default_factory=dict, max_length=MAX_PARAMS)


class Award(_Body):
    orchestrator: str = Field(min_length=1)


# The PSM takes a model; the server gives it what reads one. An Ottofile reader returns
# the pipeline and its steps' problems (None: none), or raises an ApiError at the line
# and column where it does not parse; a model checker returns a loaded model's problems.
OttofileReader = Callable[[str], tuple[pipeline_model.Pipeline, str | None]]
ModelChecker = Callable[[pipeline_model.Pipeline], str | None]


class PsmApi:
    def __init__(
        self,
        psm: PipelineStateMachine,
        read_ottofile: OttofileReader,
        check_model: ModelChecker,
        fanout: FanOut | None = None,
    ) -> None:
        self.psm = psm
        self.read_ottofile = read_ottofile
        self.check_model = check_model
        self.fanout = fanout  # serves event streams off the API's loop, when running

    def endpoints(self) -> list[Endpoint]:
        return [
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
                responses={
                    200: "the model; each batch (`hooks`: true for a batch of hooks) and each "
                    "context (`hook`: what a rollback or notify context reacts to) with its "
                    "states and why",
                    404: "unknown uuid",
                },
            ),
            Endpoint(
                "GET",
                "/v1/pipelines/{uuid}/transitions",
                self.transitions,
                "A pipeline's transitions, in order",
                responses={200: "OK", 404: "unknown uuid"},
            ),
            Endpoint(
                "GET",
                "/v1/pipelines/{uuid}/replay",
                self.replay,
                "A run's states re-derived from its transition log alone, through the "
                "transition table, compared with the stored states: consistent, or each "
                "difference (entity, id, field, stored and replayed; seq for a transition "
                "the table does not allow)",
                responses={200: "OK", 404: "unknown uuid"},
            ),
            Endpoint(
                "POST",
                "/v1/pipelines/{uuid}/abort",
                self.abort,
                "Abort a run",
                responses={202: "abort under way", 404: "unknown uuid", 409: "already complete"},
            ),
            *(
                Endpoint(
                    "POST",
                    f"/v1/pipelines/{{uuid}}/contexts/{{ctx}}/{verb}",
                    handler,
                    f"{verb.capitalize()} a context Waiting at its gate's input ({{ctx}}: its "
                    "uuid or stage name); who, when and the comment go in the transition"
                    + (
                        "; `params`: a value for each parameter the input asks for"
                        if verb == "approve"
                        else ""
                    ),
                    AnswerInput,
                    {
                        200: "answered",
                        404: "unknown pipeline or context",
                        409: "the context is not Waiting (`current` names its state)",
                        422: "an invalid field, or a parameter the input asks for is missing",
                    },
                )
                for verb, handler in (("approve", self.approve), ("reject", self.reject))
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
                "present: ?after=0 asks for the whole history). A stream that falls behind "
                'is sent a `resync` event (data {"after": SEQ}, id SEQ) and closed: '
                "reconnect with Last-Event-ID SEQ",
                responses={200: "OK", 400: "a bad after, limit, entity or Last-Event-ID"},
                headers={"Last-Event-ID": "SSE: resume after this sequence number"},
                query={
                    "after": {
                        "description": "transitions after this sequence number",
                        "schema": {"type": "integer", "minimum": 0},
                    },
                    "limit": {
                        "description": "JSON: at most this many (up to 10,000)",
                        "schema": {"type": "integer", "minimum": 1, "default": 1000},
                    },
                    "pipeline": {
                        "description": "only this pipeline's transitions",
                        "schema": {"type": "string"},
                    },
                    "entity": {
                        "description": "only these entities' transitions, comma-separated: "
                        + ", ".join(sorted(ENTITIES)),
                        "schema": {"type": "string"},
                    },
                },
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
        ]

    # -- pipelines -----------------------------------------------------------------
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
                pipeline, problems = self.read_ottofile(body.ottofile)
            else:
                pipeline = pipeline_model.load(body.model)
                problems = self.check_model(pipeline)
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
            raise refusal(exc) from None
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
            raise refusal(exc) from None

    def transitions(self, request: Request) -> Response:
        try:
            found = self.psm.transitions(request.path_params["uuid"])
        except NotFound as exc:
            raise refusal(exc) from None
        return JSONResponse({"transitions": [t.to_dict() for t in found]})

    def replay(self, request: Request) -> Response:
        try:
            verdict = self.psm.replay(request.path_params["uuid"])
        except NotFound as exc:
            raise refusal(exc) from None
        return JSONResponse(verdict.to_dict())

    def abort(self, request: Request) -> Response:
        try:
            self.psm.abort(request.path_params["uuid"], actor=_actor(request))
        except (NotFound, Conflict) as exc:
            raise refusal(exc) from None
        return JSONResponse({"uuid": request.path_params["uuid"], "aborting": True}, 202)

    def approve(self, request: Request) -> Response:
        return self._answer(request, approved=True)

    def reject(self, request: Request) -> Response:
        return self._answer(request, approved=False)

    def _answer(self, request: Request, approved: bool) -> Response:
        body = parse_body(AnswerInput, request.state.body)
        uuid, ctx = request.path_params["uuid"], request.path_params["ctx"]
        if not approved and body.params:
            raise ApiError(422, "invalid_request", "params: only an approval gives them",
                           field="params")  # fmt: skip
        answer = Answer(approved, body.by, body.comment, body.params)
        try:
            context = self.psm.answer(uuid, ctx, answer)
        except (NotFound, Conflict) as exc:
            raise refusal(exc) from None
        except MissingParameters as exc:
            message = f"params: missing {', '.join(exc.names)} (the input asks for them)"
            raise ApiError(
                422, "missing_params", message, field="params", missing=exc.names
            ) from None
        state = "approved" if approved else "rejected"
        return JSONResponse({"uuid": uuid, "context": context, "answer": state})

    def retry(self, request: Request) -> Response:
        uuid = request.path_params["uuid"]
        every = query_bool(request, "all")
        try:
            retried = self.psm.retry(uuid, actor=_actor(request), every=every)
        except (NotFound, Conflict) as exc:
            raise refusal(exc) from None
        return JSONResponse({"uuid": uuid, "retried": retried}, 202)

    def table(self, request: Request) -> Response:
        by_reason = {reason: states.table(moves) for reason, moves in states.BY_REASON.items()}
        return JSONResponse({"transitions": states.table(), "by_reason": by_reason})

    # -- events --------------------------------------------------------------------
    async def events(self, request: Request) -> Response:
        after = query_int(request, "after", 0)
        only = _event_filter(request)
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
            return self._stream(request, after, only)
        limit = query_int(request, "limit", 1000, minimum=1)
        found = self.psm.events.after(after, limit=min(limit, 10_000), only=only)
        return JSONResponse({"events": [t.to_dict() for t in found]})

    def _stream(self, request: Request, after: int, only: EventFilter) -> Response:
        """Served by the fan-out thread when the connection can be handed to it; else
        (another ASGI server, an unsent earlier answer) here, pulled as the client reads."""
        detach = request.scope.get("extensions", {}).get(DETACH)
        fanout = self.fanout
        if fanout is not None and fanout.running and detach is not None:
            detached = detach()
            if detached is not None:
                fanout.attach(detached.sock, only, after, detached.release)
                return HandedOver()
        return StreamingResponse(
            self._sse(after, only),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _sse(self, after: int, only: EventFilter) -> AsyncIterator[bytes]:
        hub = self.psm.events
        cursor = after
        yield b"retry: 1000\n\n"
        while True:
            newest = hub.last_seq  # before the read: what commits after it, it has not seen
            batch = hub.encoded_after(cursor, only=only)
            if batch:
                yield b"".join(sse_frame(t, data) for t, data in batch)
                cursor = batch[-1][0].seq
                continue
            cursor = max(cursor, newest)
            if not await hub.wait_async(cursor, HEARTBEAT_SECONDS):
                yield b": keep-alive\n\n"

    # -- executors -----------------------------------------------------------------
    def open_contexts(self, request: Request) -> Response:
        return JSONResponse({"contexts": self.psm.open_contexts()})

    def award(self, request: Request) -> Response:
        body = parse_body(Award, request.state.body)
        return self._do(lambda: self.psm.award(request.path_params["uuid"], body.orchestrator))

    def _do(self, action: Any) -> Response:
        try:
            action()
        except (NotFound, Conflict) as exc:
            raise refusal(exc) from None
        return JSONResponse({"ok": True})


class HandedOver(Response):
    """The answer of a request whose connection another part took over: nothing is sent
    from here; it returns once the server has let the connection go."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass


def _event_filter(request: Request) -> EventFilter:
    """`?pipeline=` and `?entity=` (a comma-separated list), a 400 naming a bad one."""
    raw = request.query_params.get("entity")
    entities = None
    if raw is not None:
        entities = [name.strip() for name in raw.split(",")]
        if not all(name in ENTITIES for name in entities):
            message = f"entity: a comma-separated list of {', '.join(sorted(ENTITIES))}"
            raise ApiError(400, "invalid_query", message, field="entity")
    return EventFilter.of(request.query_params.get("pipeline"), entities)


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
