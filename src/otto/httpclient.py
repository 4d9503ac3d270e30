"""What every HTTP client of an Otto server shares: the CLI's `OttoClient`
(`otto.client.ottoclient`), a remote orchestrator's `ServerApi` (`otto.orchestrator.server_api`)
and `HttpObjectStore` (`otto.objectstore.client`).

One way to connect (base URL, `User-Agent`, bearer token), one back-off between
retries, one reading of the server's error answers (`{"error": {"code", "message",
…}}`, the code also in `X-Otto-Error`) and one `Unauthorized` for a refused token.
Each client turns an `ErrorAnswer` into the errors its own interface promises
(`ClientError` and its exit codes, the PSM's `Conflict` and `NotFound`, the object
store's errors); each of them is an `Unauthorized` for a 401.

It imports nothing of Otto's but its version, so that every part may use it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from otto import __version__


class Unauthorized(Exception):
    """The server refused the token (or wants one)."""


@dataclass(frozen=True)
class ErrorAnswer:
    """An error answer as the server explained it."""

    status: int
    code: str | None  # e.g. "not_found", "stale_lease"; None when the server named none
    message: str | None  # the server's own words; None when it sent none
    details: dict[str, Any] = field(default_factory=dict)  # the whole error object


def read_error(response: httpx.Response) -> ErrorAnswer:
    """The error a (read) answer carries; its body is not read for a HEAD request."""
    error: Any = {}
    if response.request.method != "HEAD":
        try:
            error = json.loads(response.content).get("error", {})
        except (ValueError, AttributeError):
            error = {}
    if not isinstance(error, dict):
        error = {}
    code = error.get("code") or response.headers.get("x-otto-error") or None
    message = error.get("message")
    return ErrorAnswer(response.status_code, code, None if message is None else str(message), error)


def connect(
    base_url: str,
    token: str | None = None,
    *,
    agent: str | None = None,
    timeout: float | httpx.Timeout = 10.0,
    headers: dict[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """An httpx client for the server at `base_url`, sending `token` as
    `Authorization: Bearer` and `otto-AGENT/VERSION` as its `User-Agent`."""
    sent = dict(headers or {})
    if agent:
        sent["User-Agent"] = f"otto-{agent}/{__version__}"
    if token:
        sent["Authorization"] = f"Bearer {token}"
    return httpx.Client(
        base_url=base_url.rstrip("/"), headers=sent, timeout=timeout, transport=transport
    )


def backoff(first: float, longest: float = 2.0) -> Iterator[float]:
    """Pauses between retries: `first`, then twice the one before, at most `longest`."""
    pause = first
    while True:
        yield pause
        pause = min(pause * 2, longest)


def problem(exc: httpx.TransportError) -> str:
    """What went wrong on the way, in a few words."""
    return str(exc) or type(exc).__name__
