"""The API token (issue 5): who may change things on an `otto server`.

With a token configured (`OTTO_TOKEN`, or `token:` in the config file), every
mutating request (POST, PUT, PATCH, DELETE) and every request to an
orchestrator endpoint (`/v1/orchestrators…`, reads included: the message
stream tells what runs where) must carry `Authorization: Bearer <token>`, or
gets 401 with a JSON error. Other reads stay open, and `/health` always is.
Without a token, the server only listens on a loopback address
(`is_loopback`), so nothing on the network can drive it unasked.
"""

from __future__ import annotations

import ipaddress
import secrets

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

READS = frozenset({"GET", "HEAD", "OPTIONS"})
GUARDED_PREFIX = "/v1/orchestrators"


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may well be reachable


# Forges cannot send our token; each webhook request carries its own signature.
SIGNED_PREFIX = "/v1/webhooks/"


def needs_token(method: str, path: str) -> bool:
    if path == "/health" or path.startswith(SIGNED_PREFIX):
        return False
    return method not in READS or path == GUARDED_PREFIX or path.startswith(GUARDED_PREFIX + "/")


class BearerToken:
    """ASGI middleware: 401 for a guarded request without the right bearer token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not needs_token(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if given is not None and secrets.compare_digest(given, self.expected):
            await self.app(scope, receive, send)
            return
        message = (
            "this server needs its API token: send Authorization: Bearer <token>"
            if given is None
            else "wrong API token"
        )
        response = JSONResponse(
            {"error": {"code": "unauthorized", "message": message}},
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="otto"', "X-Otto-Error": "unauthorized"},
        )
        await response(scope, receive, send)
