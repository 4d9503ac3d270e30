"""What every Otto HTTP API shares: JSON errors, validated bodies, the OpenAPI document.

Each service part declares its endpoints as `Endpoint` data; the server
turns them into Starlette routes and the OpenAPI document from the same list,
so the documentation cannot drift from what is served.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from otto.diskspace import DISK_FULL, describe, trouble
from otto.limits import MAX_JSON_DEPTH, TooDeep, load_json
from otto.validation import first_mistake

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request], Awaitable[Response]] | Callable[[Request], Response]

MAX_BODY = 25 * 1024 * 1024


class ApiError(Exception):
    """An error answered as `{"error": {"code", "message", …}}` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def response(self) -> JSONResponse:
        body = {"error": {"code": self.code, "message": self.message, **self.extra}}
        return JSONResponse(body, status_code=self.status)


def parse_body(model: type[M], raw: bytes) -> M:
    """Validate a JSON body; a bad one is a 400/422 naming the field."""
    if len(raw) > MAX_BODY:
        raise ApiError(413, "too_large", f"request body over {MAX_BODY} bytes")
    data = json_body(raw or b"{}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        mistake = first_mistake(exc, model)
        where = mistake.where or "body"
        message = mistake.message if mistake.loc else f"body: {mistake.message}"
        raise ApiError(422, "invalid_request", message, field=where) from None


def json_body(raw: bytes) -> Any:
    """A request body as JSON; 400 when it is not JSON or nests deeper than
    `MAX_JSON_DEPTH` (a JSON error, never a RecursionError's 500)."""
    try:
        return load_json(raw)
    except TooDeep as exc:
        raise ApiError(400, "too_deep", f"request body: {exc}", limit=MAX_JSON_DEPTH) from None
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"request body is not JSON: {exc}") from None


def query_bool(request: Request, name: str) -> bool:
    """A `true`/`false` (or `1`/`0`) query parameter; absent is false."""
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise ApiError(400, "invalid_query", f"{name}: not true or false", field=name)


def query_int(request: Request, name: str, default: int, minimum: int = 0) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_query", f"{name}: not an integer", field=name) from None
    if value < minimum:
        raise ApiError(400, "invalid_query", f"{name}: must be ≥ {minimum}", field=name)
    return value


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    responses: dict[int, str] = field(default_factory=lambda: {200: "OK"})
    content: str = "application/json"  # of the request body, when there is one
    # what a `text/plain` body holds, for an endpoint that also takes one (otto.auth)
    text_body: str = ""
    headers: dict[str, str] = field(default_factory=dict)  # optional request headers it reads
    # optional query parameters it reads: name → their OpenAPI description and schema
    query: dict[str, dict[str, Any]] = field(default_factory=dict)


def routes(endpoints: list[Endpoint]) -> list[Route]:
    by_path: dict[str, dict[str, Handler]] = {}
    for e in endpoints:
        by_path.setdefault(e.path, {})[e.method] = e.handler
    return [
        Route(path, _dispatch(methods), methods=list(methods)) for path, methods in by_path.items()
    ]


def _dispatch(methods: dict[str, Handler]) -> Callable[[Request], Awaitable[Response]]:
    import inspect

    from starlette.concurrency import run_in_threadpool

    async def endpoint(request: Request) -> Response:
        handler = methods[request.method if request.method != "HEAD" else "GET"]
        try:
            if inspect.iscoroutinefunction(handler):
                return await handler(request)  # type: ignore[misc]
            request.state.body = await request.body()
            return await run_in_threadpool(handler, request)  # type: ignore[arg-type]
        except ApiError as err:
            return err.response()
        except Exception as exc:
            answer = storage_error(exc)
            if answer is None:
                raise
            return answer.response()

    return endpoint


def storage_error(exc: BaseException) -> ApiError | None:
    """A database or store that refused for lack of space (507 `disk_full`) or could not be
    reached (503 `store_unavailable`), as a JSON answer naming it, not a bare 500."""
    kind = trouble(exc)
    if kind is None:
        return None
    status = 507 if kind == DISK_FULL else 503
    return ApiError(status, kind, describe(kind, exc) + "; try again later")


READS = frozenset({"GET", "HEAD", "OPTIONS"})


def common_answers(e: Endpoint) -> dict[int, str]:
    """The 4xx answers every endpoint of its kind may give, whatever its handler says:
    the server's guard (`otto.auth`: Host, Origin, Content-Type, token) and the body
    limits (`otto.limits`) come before any handler."""
    answers = {
        401: "missing or wrong API token (when the server has one, or requires one for reads)",
        421: "the Host header names no host this server answers to",
    }
    if e.method not in READS:
        answers[403] = "a request from another origin"
        answers[413] = "a request body over this endpoint's limit (otto.limits)"
        answers[408] = "a request body that stalled (otto.limits)"
        if not e.path.startswith("/v1/webhooks/"):  # forges send what they send, signed
            answers[415] = (
                "a body that is neither application/json nor text/plain (UTF-8)"
                if e.text_body
                else "a body that is not application/json"
            )
    if e.body is not None:
        answers[400] = "a body that is not JSON, or nests too deep"
        answers[422] = "a field is missing or invalid"
    return answers


def openapi(endpoints: list[Endpoint], title: str, version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for e in endpoints:
        answers = {**common_answers(e), **e.responses}
        op: dict[str, Any] = {
            "summary": e.summary,
            "responses": {str(code): {"description": answers[code]} for code in sorted(answers)},
        }
        params = [p.strip("{}").split(":")[0] for p in e.path.split("/") if p.startswith("{")]
        if params:
            op["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        if e.headers:
            op.setdefault("parameters", []).extend(
                {"name": name, "in": "header", "required": False, "description": text,
                 "schema": {"type": "string", "maxLength": 255}}
                for name, text in e.headers.items()
            )  # fmt: skip
        if e.query:
            op.setdefault("parameters", []).extend(
                {"name": name, "in": "query", "required": False, **fields}
                for name, fields in e.query.items()
            )
        if e.body is not None:
            schema = e.body.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[e.body.__name__] = schema
            ref = {"$ref": f"#/components/schemas/{e.body.__name__}"}
            content: dict[str, Any] = {e.content: {"schema": ref}}
            if e.text_body:
                content["text/plain"] = {"schema": {"type": "string", "description": e.text_body}}
            op["requestBody"] = {"required": True, "content": content}
        path = "/".join(p.split(":")[0] + ("}" if ":" in p else "") for p in e.path.split("/"))
        paths.setdefault(path, {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": schemas},
    }
