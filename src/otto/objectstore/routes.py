"""The object store's HTTP API, mounted by `otto server`.

- `PUT /v1/objects/{key}`: store the body (`Content-Type` is kept) → 200 + the
  object's info as JSON. The body is spooled, then stored atomically: a client that
  disconnects mid-upload leaves the old object as it was.
- `PUT /v1/objects/{key}` with header `X-Otto-Append-Offset: N`: append the body at
  offset N → 200 `{"key", "size"}` (the new size; `Content-Type` only counts when the
  append creates the object); a wrong offset → 409
  `offset_mismatch` whose error carries `current_size`.
- `GET /v1/objects/{key}`: the content, streamed; `Range: bytes=a-b`, `bytes=a-`,
  `bytes=-n` → 206 with `Content-Range` (416 when unsatisfiable; several ranges are
  ignored, as RFC 9110 allows). `HEAD` gives the same headers: `Content-Length`,
  `Content-Type`, `Last-Modified`, `X-Otto-Modified` (ISO 8601), `X-Otto-Sha256` and
  `ETag` when the checksum is known.
- `DELETE /v1/objects/{key}` → 204. `POST /v1/objects/{key}?action=compact` → info.
- `GET /v1/objects?prefix=P` → JSON list of `{key, size, content_type, sha256, modified}`.

Errors: `{"error": {"code", "message", ...}}` (the code also in `X-Otto-Error`, for
HEAD): 400 `invalid_key`/`invalid_argument`, 401, 404, 409 `key_conflict` or
`offset_mismatch`, 413 `too_large`, 416, 507 `disk_full` (nothing of the write is kept:
send it again once space is freed). Keys arrive decoded once by the server;
`otto.objectstore.keys` refuses whatever still looks encoded.
"""

from __future__ import annotations

import logging
import re
import secrets
import tempfile
from collections.abc import Iterator
from email.utils import format_datetime
from typing import IO
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from otto import httpclient
from otto.diskspace import SpaceWatch
from otto.objectstore.base import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_MAX_OBJECT_SIZE,
    ObjectInfo,
    ObjectStore,
    ObjectStream,
)
from otto.objectstore.errors import (
    InvalidArgument,
    ObjectStoreError,
    ObjectTooLarge,
    StoreFull,
)
from otto.objectstore.keys import validate_key, validate_prefix

APPEND_HEADER = "X-Otto-Append-Offset"
MAX_APPEND_CHUNK = 64 * 1024 * 1024
log = logging.getLogger(__name__)


class _AnyPath(PathConvertor):
    """Like `path`, but also matching control characters (`.` skips a newline), so a
    key holding one reaches `validate_key` and gets a 400 naming it, not a bare 404."""

    regex = r"[\s\S]*"


register_url_convertor("objectkey", _AnyPath())


class Unauthorized(ObjectStoreError, httpclient.Unauthorized):
    """A missing or wrong bearer token; `HttpObjectStore` raises it for the server's 401."""

    code = "unauthorized"
    status = 401


class RangeNotSatisfiable(ObjectStoreError):
    code = "range_not_satisfiable"
    status = 416

    def __init__(self, message: str, size: int | None = None) -> None:
        super().__init__(message)
        self.size = size


def error_response(error: ObjectStoreError) -> Response:
    body = {"error": {"code": error.code, "message": error.message, **error.details()}}
    headers = {"X-Otto-Error": error.code}
    if isinstance(error, RangeNotSatisfiable) and error.size is not None:
        headers["Content-Range"] = f"bytes */{error.size}"
    return JSONResponse(body, status_code=error.status, headers=headers)


# What objects are served with (README, "Security"): whatever a step archived or a client stored
# comes from the dashboard's origin, so it must never run there as a page.
OBJECT_CSP = "sandbox; default-src 'none'"
LOG_TYPE = "text/plain; charset=utf-8"
# Types a browser would render as a document (and run script in), served as bytes instead.
ACTIVE_TYPES = re.compile(
    r"^(text/html|application/xhtml|image/svg|text/xsl|text/xml|application/xml"
    r"|multipart/|application/(x-)?(java|ecma)script|text/(java|ecma)script"
    r"|application/pdf)|xml$",
)


def is_log(key: str) -> bool:
    """A step's or a context's log (`…/CONTEXT/STEP.log`), shown inline as plain text."""
    return key.endswith(".log") and "/artifacts/" not in key


def served_type(key: str, stored: str) -> str:
    """The `Content-Type` an object is served with: logs are UTF-8 text; a type a browser
    would render as an active document is plain bytes."""
    if is_log(key):
        return LOG_TYPE
    media = stored.split(";", 1)[0].strip().lower()
    if not re.fullmatch(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+", media) or ACTIVE_TYPES.search(
        media
    ):
        return DEFAULT_CONTENT_TYPE
    return stored


def safety_headers(key: str) -> dict[str, str]:
    """No sniffing, no script, and (but for logs) a download, not a page."""
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": OBJECT_CSP}
    if not is_log(key):
        name = key.rsplit("/", 1)[-1]
        ascii_name = re.sub(r"[^A-Za-z0-9._+-]", "_", name) or "object"
        headers["Content-Disposition"] = (
            f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
        )
    return headers


def info_headers(info: ObjectInfo) -> dict[str, str]:
    headers = {
        **safety_headers(info.key),
        "Content-Type": served_type(info.key, info.content_type),
        "Last-Modified": format_datetime(info.modified, usegmt=True),
        "X-Otto-Modified": info.modified.isoformat(),
        "Accept-Ranges": "bytes",
    }
    if info.sha256:
        headers["X-Otto-Sha256"] = info.sha256
        headers["ETag"] = f'"{info.sha256}"'
    return headers


def parse_range(header: str | None) -> tuple[int | None, int | None] | None:
    """`bytes=a-b` → (a, b + 1); `bytes=a-` → (a, None); `bytes=-n` → (None, n).
    None when there is nothing to honour (no header, another unit, several ranges)."""
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    match = re.fullmatch(r"\s*(\d*)-(\d*)\s*", spec)
    if not match or match[1] == match[2] == "":
        raise RangeNotSatisfiable(f"malformed Range header {header!r}")
    if match[1] == "":
        return None, int(match[2])
    start, last = int(match[1]), (int(match[2]) if match[2] else None)
    if last is not None and last < start:
        raise RangeNotSatisfiable(f"Range {header!r} ends before it starts")
    return start, None if last is None else last + 1


def _body(stream: ObjectStream) -> Iterator[bytes]:
    with stream:
        yield from stream


class _ObjectsAPI:
    def __init__(
        self, store: ObjectStore, token: str | None, space: SpaceWatch | None = None
    ) -> None:
        self.store = store
        self.token = token
        self.space = space
        self.limit = getattr(store, "max_object_size", DEFAULT_MAX_OBJECT_SIZE)

    def _authorize(self, request: Request) -> None:
        if self.token is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            raise Unauthorized("missing or wrong bearer token")

    async def listing(self, request: Request) -> Response:
        try:
            self._authorize(request)
            prefix = validate_prefix(request.query_params.get("prefix", ""))
            found = await run_in_threadpool(self.store.list, prefix)
            return JSONResponse([info.to_json() for info in found])
        except ObjectStoreError as error:
            return error_response(error)

    async def object(self, request: Request) -> Response:
        try:
            self._authorize(request)
            key = validate_key(request.path_params["key"])
            if request.method in ("GET", "HEAD"):
                return await self._get(request, key)
            if request.method == "PUT":
                answer = await self._put(request, key)
                if self.space is not None:
                    self.space.note(None)  # stored: whatever was full has room again
                return answer
            if request.method == "DELETE":
                await run_in_threadpool(self.store.delete, key)
                return Response(status_code=204)
            if request.query_params.get("action") != "compact":
                raise InvalidArgument("POST on an object needs ?action=compact")
            info = await run_in_threadpool(self.store.compact, key)
            return JSONResponse(info.to_json())
        except ObjectStoreError as error:
            if self.space is not None and isinstance(error, StoreFull):
                self.space.note(error, "object store")
            return error_response(error)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is listening; nothing was stored
        except Exception:
            log.exception("object store request failed: %s %s", request.method, request.url)
            message = "internal error in the object store"
            return JSONResponse({"error": {"code": "internal", "message": message}}, 500)

    async def _get(self, request: Request, key: str) -> Response:
        if request.method == "HEAD":
            info = await run_in_threadpool(self.store.head, key)
            headers = {**info_headers(info), "Content-Length": str(info.size)}
            return Response(status_code=200, headers=headers)
        wanted = parse_range(request.headers.get("range"))
        if wanted is None:
            stream = await run_in_threadpool(self.store.open, key)
            headers = {**info_headers(stream.info), "Content-Length": str(stream.info.size)}
            return StreamingResponse(_body(stream), headers=headers)
        start, end = wanted
        if start is None:  # the last `end` bytes
            size = (await run_in_threadpool(self.store.head, key)).size
            if not end:
                raise RangeNotSatisfiable("a suffix range of 0 bytes is empty", size)
            start, end = max(0, size - end), None
        stream = await run_in_threadpool(self.store.open, key, start, end)
        size = stream.info.size
        stop = size if end is None else min(end, size)
        if start >= stop:
            stream.close()
            raise RangeNotSatisfiable(f"range starts at {start}; {key!r} has {size} bytes", size)
        headers = {
            **info_headers(stream.info),
            "Content-Length": str(stop - start),
            "Content-Range": f"bytes {start}-{stop - 1}/{size}",
        }
        return StreamingResponse(_body(stream), status_code=206, headers=headers)

    async def _put(self, request: Request, key: str) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            raise ObjectTooLarge(key, self.limit)
        offset = request.headers.get(APPEND_HEADER)
        if offset is not None:
            if not offset.strip().isdigit():
                raise InvalidArgument(f"{APPEND_HEADER} must be a byte offset, not {offset!r}")
            data = await self._read(request, key, min(self.limit, MAX_APPEND_CHUNK))
            content_type = request.headers.get("content-type")
            size = await run_in_threadpool(self.store.append, key, int(offset), data, content_type)
            return JSONResponse({"key": key, "size": size})
        content_type = request.headers.get("content-type")
        with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as spool:
            await self._spool(request, key, spool)
            info = await run_in_threadpool(self.store.put, key, spool, content_type)
        return JSONResponse(info.to_json())

    async def _spool(self, request: Request, key: str, spool: IO[bytes]) -> None:
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > self.limit:
                raise ObjectTooLarge(key, self.limit)
            await run_in_threadpool(spool.write, chunk)
        spool.seek(0)

    async def _read(self, request: Request, key: str, limit: int) -> bytes:
        parts, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise ObjectTooLarge(key, limit)
            parts.append(chunk)
        return b"".join(parts)


def routes(
    store: ObjectStore, token: str | None = None, space: SpaceWatch | None = None
) -> list[BaseRoute]:
    """The object-store routes, to add to the server's Starlette app; `space` hears of a
    full disk (`GET /health`)."""
    api = _ObjectsAPI(store, token, space)
    return [
        Route("/v1/objects", api.listing, methods=["GET"]),
        Route(
            "/v1/objects/{key:objectkey}",
            api.object,
            methods=["GET", "HEAD", "PUT", "DELETE", "POST"],
        ),
    ]
