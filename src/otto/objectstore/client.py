"""`HttpObjectStore`: the `ObjectStore` interface over the server's HTTP API (see
`otto.objectstore.routes`), for agents and tools on other machines, built on
`otto.httpclient`. Errors come back as the same exception classes the server-side
store raised."""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from otto.httpclient import backoff, connect, read_error
from otto.objectstore.base import (
    CHUNK_SIZE,
    DEFAULT_CONTENT_TYPE,
    Data,
    ObjectInfo,
    ObjectStore,
    ObjectStream,
    check_content_type,
    check_range,
)
from otto.objectstore.errors import (
    InvalidArgument,
    InvalidKey,
    KeyConflict,
    ObjectNotFound,
    ObjectStoreError,
    ObjectTooLarge,
    OffsetMismatch,
    StoreFull,
    StoreUnavailable,
)
from otto.objectstore.keys import validate_key, validate_prefix
from otto.objectstore.routes import APPEND_HEADER, Unauthorized

_SIMPLE: dict[str, type[ObjectStoreError]] = {
    "invalid_key": InvalidKey,
    "invalid_argument": InvalidArgument,
    "not_found": ObjectNotFound,
    "key_conflict": KeyConflict,
    "disk_full": StoreFull,  # the server's disk: the same append may be sent again later
    "unavailable": StoreUnavailable,
}
# Refusals worded as "METHOD 'key': the server's message".
_NAMED: dict[str, type[ObjectStoreError]] = {"unauthorized": Unauthorized}


CONNECT_RETRIES = 6


def _stream_of(data: Any) -> Iterator[bytes]:
    while chunk := data.read(CHUNK_SIZE):
        yield chunk


class _Reconnecting(httpx.BaseTransport):
    """Sends a request that could not connect again (0.25, 0.5, 1, … s apart), but only
    once the server is known to be there (it answered before, or whoever gave the URL
    knew: `known_up`): a restart must not fail a remote agent's logs, while a wrong URL
    fails at once. Not connecting means nothing was sent: sending again is safe.

    `others`: more servers sharing the same store (replicas): a request that cannot
    connect goes to the next one, and later requests go there too; so does the request
    after one whose server went away before it answered."""

    def __init__(self, retries: int, known_up: bool = False, others: Sequence[str] = ()) -> None:
        self.inner = httpx.HTTPTransport()
        self.pauses = list(itertools.islice(backoff(0.25, math.inf), retries))
        self.answered = known_up
        self.others = [httpx.URL(url) for url in others]
        self.origins: list[httpx.URL] | None = None  # the first's, then `others`
        self.current = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.origins is None:
            self.origins = [request.url, *self.others]
        for pause in [*self.pauses, None]:
            _aim(request, self.origins[self.current])
            try:
                response = self.inner.handle_request(request)
            except httpx.ConnectError:
                if pause is None or not self.answered:
                    raise
                self.current = (self.current + 1) % len(self.origins)
                time.sleep(pause)
                continue
            except (httpx.RemoteProtocolError, httpx.ReadError):
                # The server went away mid-request: whether it acted is unknown, so the
                # caller decides whether to send again; it will reach the next server.
                self.current = (self.current + 1) % len(self.origins)
                raise
            self.answered = True
            return response
        raise AssertionError("unreachable")

    def close(self) -> None:
        self.inner.close()


def _aim(request: httpx.Request, origin: httpx.URL) -> None:
    """Send `request` to the server at `origin` (its scheme, host and port)."""
    url = request.url.copy_with(scheme=origin.scheme, host=origin.host, port=origin.port)
    if url != request.url:
        request.url = url
        request.headers["Host"] = url.netloc.decode("ascii")


class _Translating(httpx.BaseTransport):
    """A store that cannot be reached raises the store's own error, like any other failure."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return self.inner.handle_request(request)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"object store at {request.url.host}: {exc}") from None

    def close(self) -> None:
        self.inner.close()


class HttpObjectStore(ObjectStore):
    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 60.0,
        connect_retries: int = CONNECT_RETRIES,
        known_up: bool = False,
        others: Sequence[str] = (),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = connect(
            base_url,
            token,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=_Translating(_Reconnecting(connect_retries, known_up, others)),
        )

    def __repr__(self) -> str:
        return f"HttpObjectStore({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    @staticmethod
    def _url(key: str) -> str:
        return "/v1/objects/" + quote(validate_key(key), safe="/")

    @staticmethod
    def _error(key: str, response: httpx.Response, offset: int = 0) -> ObjectStoreError:
        answer = read_error(response)
        code, error = answer.code or "", answer.details
        message = answer.message if answer.message is not None else f"HTTP {answer.status}"
        if code == "offset_mismatch":
            return OffsetMismatch(key, offset, int(error.get("current_size", 0)))
        if code == "too_large":
            return ObjectTooLarge(key, int(error.get("limit", 0)))
        if code in _SIMPLE:
            return _SIMPLE[code](message)
        return _NAMED.get(code, ObjectStoreError)(f"{response.request.method} {key!r}: {message}")

    def _check(self, key: str, response: httpx.Response, offset: int = 0) -> httpx.Response:
        if response.status_code >= 400:
            response.read()
            raise self._error(key, response, offset)
        return response

    @staticmethod
    def _info(key: str, response: httpx.Response) -> ObjectInfo:
        headers = response.headers
        size = int(headers.get("content-length", 0))
        if response.status_code == 206:
            size = int(headers["content-range"].rpartition("/")[2])
        return ObjectInfo(
            key=key,
            size=size,
            content_type=headers.get("content-type", DEFAULT_CONTENT_TYPE),
            sha256=headers.get("x-otto-sha256"),
            modified=datetime.fromisoformat(headers["x-otto-modified"]),
        )

    def put(self, key: str, data: Data, content_type: str | None = None) -> ObjectInfo:
        url = self._url(key)
        headers = {"Content-Type": check_content_type(content_type)}
        if isinstance(data, bytes | bytearray | memoryview):
            content: Any = bytes(data)
        else:
            content = _stream_of(data)
        response = self._http.put(url, content=content, headers=headers)
        return ObjectInfo.from_json(self._check(key, response).json())

    def open(self, key: str, start: int = 0, end: int | None = None) -> ObjectStream:
        url = self._url(key)
        check_range(start, end)
        if end is not None and end == start:
            return ObjectStream(self.head(key), iter(()))
        headers = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        response = self._http.send(
            self._http.build_request("GET", url, headers=headers), stream=True
        )
        if response.status_code == 416:  # starts at or after the end: nothing to read
            response.close()
            return ObjectStream(self.head(key), iter(()))
        self._check(key, response)
        return ObjectStream(
            self._info(key, response), response.iter_bytes(CHUNK_SIZE), response.close
        )

    def head(self, key: str) -> ObjectInfo:
        response = self._check(key, self._http.head(self._url(key)))
        return self._info(key, response)

    def delete(self, key: str) -> None:
        self._check(key, self._http.delete(self._url(key)))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        validate_prefix(prefix)
        response = self._check(prefix, self._http.get("/v1/objects", params={"prefix": prefix}))
        return [ObjectInfo.from_json(item) for item in response.json()]

    def append(self, key: str, offset: int, data: bytes, content_type: str | None = None) -> int:
        url = self._url(key)
        if offset < 0:
            raise InvalidArgument(f"append offset {offset} is negative")
        headers = {APPEND_HEADER: str(offset)}
        if content_type is not None:
            headers["Content-Type"] = check_content_type(content_type)
        response = self._http.put(url, content=bytes(data), headers=headers)
        return int(self._check(key, response, offset).json()["size"])

    def compact(self, key: str) -> ObjectInfo:
        response = self._http.post(self._url(key), params={"action": "compact"})
        return ObjectInfo.from_json(self._check(key, response).json())
