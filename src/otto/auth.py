"""Who may read and change things on an `otto server`, and from where (README, "Security").

One ASGI middleware, `Guard`, checks every request in this order:

1. **Host** (421): the `Host` header must name this server — a loopback name or
   address, the configured `host`, the host of `public_url`, or `allowed_hosts`
   (any IP literal too when listening on a wildcard address). A DNS-rebinding page
   reaches the server under its own domain name, so it is refused here. A request
   with the right bearer token is exempt: no page can add that by itself.
2. **Origin** (403): a request carrying `Origin` must come from this server's own
   origin (the `Host` it was sent to), `public_url`'s, or `allowed_origins`.
   Browsers send `Origin` on every cross-origin POST, form or `fetch(no-cors)`.
3. **Content type** (415): a mutating request with a body must be
   `application/json`, which no page can send cross-origin without a CORS preflight
   (which Otto never grants). Exempt: the signed forge webhooks, the object store's
   `PUT` (raw bytes; PUT itself needs a preflight), `/login` and `/logout`;
   `POST /v1/parse`, which changes nothing, also takes `text/plain`.
4. **Credentials** (401): with a `token`, every mutating request and every
   `/v1/orchestrators…` request needs it; with `read_token_required`, every read
   too, except `/health`, `/static/…` and the login page. `read_token` authorises
   reads only. A browser exchanges a token once (`POST /login`) for a session
   cookie (`HttpOnly`, `SameSite=Strict`); a mutation authorised by the cookie must
   also carry the session's CSRF token in `X-Otto-CSRF`.

Every answer gets `X-Content-Type-Options: nosniff` and `Referrer-Policy:
same-origin`; pages (anything outside `/v1/`) also a strict
`Content-Security-Policy` and `X-Frame-Options: DENY`.

Without a token, the server only listens on a loopback address (`otto.config.is_loopback`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from otto.config import Settings

READS = frozenset({"GET", "HEAD", "OPTIONS"})
GUARDED_PREFIX = "/v1/orchestrators"
# Paths whose reads need the full token even when reads are open.
GUARDED_PREFIXES = (GUARDED_PREFIX, "/v1/credentials")
# Forges cannot send our token; each webhook request carries its own signature.
SIGNED_PREFIX = "/v1/webhooks/"
OBJECTS_PREFIX = "/v1/objects/"
OPEN_PATHS = frozenset({"/health", "/login", "/logout"})
# Also take a `text/plain` body: parsing an Ottofile changes nothing, so a page that
# could send one cross-origin gains nothing (and cannot read the answer).
TEXT_PATHS = frozenset({"/v1/parse"})
CSRF_HEADER = "x-otto-csrf"
SESSION_SECONDS = 7 * 24 * 3600
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

LoginPage = Callable[[str, str], str]  # (where to go next, an error) → the login page's HTML


def needs_token(method: str, path: str) -> bool:
    """Whether a request needs the (full) API token when the server has one."""
    if path in OPEN_PATHS or path.startswith(SIGNED_PREFIX):
        return False
    return method not in READS or any(
        path == prefix or path.startswith(prefix + "/") for prefix in GUARDED_PREFIXES
    )


def is_public_read(path: str) -> bool:
    """What anyone may read even with `read_token_required`: health and the login page's
    own assets (the dashboard's code is no secret)."""
    return path in OPEN_PATHS or path.startswith("/static/")


def is_page(path: str) -> bool:
    """A dashboard page (HTML), as opposed to the JSON API."""
    return not (path.startswith("/v1/") or path == "/openapi.json")


def split_names(value: str) -> list[str]:
    """A comma- or space-separated setting as a list."""
    return [part for part in value.replace(",", " ").split() if part]


def host_name(host: str) -> tuple[str, int | None]:
    """`Host` header → (lower-case name without brackets or a trailing dot, port)."""
    host = host.strip().lower()
    port: int | None = None
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    else:
        name, colon, rest = host.rpartition(":")
        if colon and rest.isdigit() and ":" not in name:
            port = int(rest)
        else:
            name = host
    return name.rstrip("."), port


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, lower case: how browsers spell an `Origin`."""
    parts = urlsplit(url.strip())
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison of strings from headers (any characters: bytes compared)."""
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def session_key(home: Path) -> bytes:
    """The server's random key for session cookies, kept in `$OTTO_HOME/session.key`
    (mode 0600) so that sessions outlive a restart; deleting it logs everyone out."""
    path = home / "session.key"
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    home.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".session.key.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    os.replace(tmp, path)
    return key


@dataclass(frozen=True)
class Grant:
    """What a request's credentials allow: `full`, `read` or nothing (`None`); `session`
    when they came from the cookie (then a mutation also needs the CSRF token)."""

    level: str | None
    session: str = ""


class Access:
    """The server's access policy: tokens, sessions, hosts and origins."""

    def __init__(
        self,
        token: str = "",
        read_token: str = "",
        read_token_required: bool = False,
        key: bytes | None = None,
        hosts: list[str] | None = None,
        origins: list[str] | None = None,
        wildcard: bool = False,
        secure: bool = False,
        cookie: str = "otto_session",
    ) -> None:
        if read_token_required and not token:
            raise ValueError("read_token_required needs an API token")
        self.token, self.read_token = token, read_token
        self.read_required = read_token_required
        self.key = key or secrets.token_bytes(32)
        names = {host_name(h)[0] for h in hosts or []}
        self.any_host = "*" in names
        self.hosts = (names - {"*"}) | LOOPBACK_NAMES
        self.origins = {origin_of(o) for o in origins or []} - {""}
        self.wildcard, self.secure, self.cookie = wildcard, secure, cookie

    @classmethod
    def from_settings(cls, settings: Settings) -> Access:
        hosts = [settings.host, *split_names(settings.allowed_hosts)]
        origins = split_names(settings.allowed_origins)
        if settings.public_url:
            hosts.append(urlsplit(settings.public_url).hostname or "")
            origins.append(settings.public_url)
        wildcard = settings.host.strip() in WILDCARDS
        if wildcard:  # whatever names this machine goes by
            hosts += [socket.gethostname(), socket.getfqdn()]
        return cls(
            token=settings.token,
            read_token=settings.read_token,
            read_token_required=settings.read_token_required,
            key=session_key(settings.home),
            hosts=[h for h in hosts if h and h.strip() not in WILDCARDS],
            origins=origins,
            wildcard=wildcard,
            secure=settings.public_url.startswith("https:"),
            cookie=f"otto_session_{settings.port}",  # cookies ignore ports: one name per server
        )

    # -- where from ------------------------------------------------------------------
    def host_allowed(self, host: str | None) -> bool:
        if host is None or self.any_host:
            return True  # HTTP/1.0 without Host: no browser sends that
        name, _ = host_name(host)
        if name in self.hosts:
            return True
        ip = _ip(name)
        return ip is not None and (ip.is_loopback or self.wildcard)

    def origin_allowed(self, origin: str, host: str | None) -> bool:
        given = origin.strip().lower().rstrip("/")
        if given in self.origins:
            return True
        parts = urlsplit(given)
        if parts.scheme not in ("http", "https") or not parts.hostname or host is None:
            return False  # `null` (sandboxed documents, file://) included
        try:
            port = parts.port
        except ValueError:
            return False
        name = parts.hostname.strip("[]").rstrip(".")
        return (name, port) == host_name(host)

    # -- who -------------------------------------------------------------------------
    def session_for(self, level: str, lifetime: int = SESSION_SECONDS) -> str:
        """A cookie value for `level`: not the token itself, but a MAC over it, so that it
        gives nothing away, and a new token (or a new key) ends every session."""
        expires = int(time.time()) + lifetime
        secret = self.token if level == "full" else self.read_token
        return f"{level}.{expires}.{_mac(self.key, f'{level}.{expires}.{secret}')}"

    def session_level(self, value: str) -> str | None:
        level, _, rest = value.partition(".")
        expires, _, mac = rest.partition(".")
        secret = {"full": self.token, "read": self.read_token}.get(level)
        if not secret or not expires.isdigit() or int(expires) < time.time():
            return None
        expected = _mac(self.key, f"{level}.{expires}.{secret}")
        return level if _same(mac, expected) else None

    def csrf_for(self, session: str) -> str:
        return _mac(self.key, f"csrf.{session}")[:40]

    def level_of(self, token: str) -> str | None:
        """What a token given in full grants."""
        if self.token and _same(token, self.token):
            return "full"
        if self.read_token and _same(token, self.read_token):
            return "read"
        return None

    def grant(self, headers: dict[str, str], cookies: dict[str, str]) -> Grant:
        given = headers.get("authorization")
        if given is not None:
            scheme, _, token = given.partition(" ")
            return Grant(self.level_of(token.strip()) if scheme.lower() == "bearer" else None)
        session = cookies.get(self.cookie, "")
        level = self.session_level(session) if session else None
        return Grant(level, session if level else "")

    def set_cookie(self, response: Response, session: str) -> None:
        response.set_cookie(
            self.cookie,
            session,
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.secure,
        )

    def clear_cookie(self, response: Response) -> None:
        response.delete_cookie(
            self.cookie, path="/", httponly=True, samesite="strict", secure=self.secure
        )

    # -- /login, /logout -------------------------------------------------------------
    def routes(self, login_page: LoginPage) -> list[BaseRoute]:
        """`GET /login` (the form), `POST /login` (JSON `{"token"}`, or the form without
        JavaScript) and `POST /logout`."""

        async def login(request: Request) -> Response:
            form = _media(request.headers.get("content-type")) != "application/json"
            following = _local(request.query_params.get("next", "/"))
            if request.method == "GET":
                return _page(login_page(following, ""))
            raw = await _read_small(request)
            if raw is None:
                return _error(413, "too_large", "a login is a token, not more")
            if form:
                fields = parse_qs(raw.decode("utf-8", "replace"))
                token = fields.get("token", [""])[0]
                following = _local(fields.get("next", [following])[0])
            else:
                try:
                    data = json.loads(raw or b"{}")
                except ValueError:
                    return _error(400, "invalid_json", "request body is not JSON")
                token = data.get("token") if isinstance(data, dict) else None
                if not isinstance(token, str):
                    return _error(422, "invalid_request", "token: a string is required")
            if not self.token:
                return _error(400, "no_token", "this server has no API token: nothing to log in to")
            level = self.level_of(token.strip())
            if level is None:
                if form:
                    return _page(login_page(following, "wrong API token"), 401)
                return _error(401, "unauthorized", "wrong API token")
            session = self.session_for(level)
            response: Response
            if form:
                response = RedirectResponse(following, status_code=303)
            else:
                response = JSONResponse({"access": level, "csrf": self.csrf_for(session)})
            self.set_cookie(response, session)
            return response

        async def logout(request: Request) -> Response:
            json_asked = _media(request.headers.get("content-type")) == "application/json"
            response: Response = (
                JSONResponse({"logged_out": True})
                if json_asked
                else RedirectResponse("/", status_code=303)
            )
            self.clear_cookie(response)
            return response

        return [
            Route("/login", login, methods=["GET", "POST"]),
            Route("/logout", logout, methods=["POST"]),
        ]


def _media(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _local(url: str) -> str:
    """Only a path on this server: a login never sends anyone elsewhere."""
    return url if url.startswith("/") and not url.startswith(("//", "/\\")) else "/"


async def _read_small(request: Request, limit: int = 64 * 1024) -> bytes | None:
    parts, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


def _page(html: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=status,
        headers={"X-Otto-Error": code, **headers},
    )


def _has_body(headers: dict[str, str]) -> bool:
    length = headers.get("content-length", "0").strip()
    return "transfer-encoding" in headers or not length.isdigit() or int(length) > 0


def json_only(method: str, path: str, headers: dict[str, str]) -> bool:
    """Whether a request passes the content-type rule (see the module docstring)."""
    if method in READS or path in OPEN_PATHS or path.startswith(SIGNED_PREFIX):
        return True
    if method == "PUT" and path.startswith(OBJECTS_PREFIX):
        return True
    media = _media(headers.get("content-type"))
    if media == "application/json" or (media == "text/plain" and path in TEXT_PATHS):
        return True
    return not media and not _has_body(headers)


class Guard:
    """ASGI middleware enforcing `Access` (see the module docstring)."""

    def __init__(self, app: ASGIApp, access: Access, login_page: LoginPage) -> None:
        self.app, self.access, self.login_page = app, access, login_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self.refusal(scope, method, path, headers)
        send = _secured(send, path)
        if refusal is not None:
            await refusal(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def refusal(
        self, scope: Scope, method: str, path: str, headers: dict[str, str]
    ) -> Response | None:
        access = self.access
        host = headers.get("host")
        # The forges' signed hooks (not the reads beside them: the deliveries list) prove
        # themselves; probes need nothing.
        signed = method not in READS and path.startswith(SIGNED_PREFIX)
        exempt = path == "/health" or signed
        grant = access.grant(headers, Request(scope).cookies) if access.token else Grant("full")
        # The right bearer token is no browser's doing (a browser never adds one by itself):
        # a remote orchestrator or `otto` may use whatever name reaches the server.
        vouched = "authorization" in headers and grant.level is not None
        if not exempt and not vouched and not access.host_allowed(host):
            return _error(
                421,
                "unknown_host",
                f"this server does not answer to {host!r}: add it to allowed_hosts",
            )
        origin = headers.get("origin")
        if origin is not None and not exempt and not access.origin_allowed(origin, host):
            return _error(
                403,
                "cross_origin",
                f"requests from {origin!r} are refused: add it to allowed_origins",
            )
        if not json_only(method, path, headers):
            return _error(
                415,
                "unsupported_media_type",
                "send the request body as Content-Type: application/json"
                + (" or text/plain" if path in TEXT_PATHS else ""),
            )
        if not access.token:
            scope["otto.auth"] = {"mode": "none", "csrf": "", "level": "full"}
            return None
        csrf = access.csrf_for(grant.session) if grant.session else ""
        scope["otto.auth"] = {"mode": "in" if grant.session else "out", "csrf": csrf}
        scope["otto.auth"]["level"] = grant.level or ""
        if needs_token(method, path):
            if grant.level != "full":
                return self.unauthorized(scope, headers, grant)
            if grant.session and not _same(headers.get(CSRF_HEADER, ""), csrf):
                return _error(403, "csrf", "the session's CSRF token (X-Otto-CSRF) is missing")
            return None
        if access.read_required and not (is_public_read(path) or signed) and grant.level is None:
            return self.unauthorized(scope, headers, grant)
        return None

    def unauthorized(self, scope: Scope, headers: dict[str, str], grant: Grant) -> Response:
        """401: JSON for the API; for a page, the login page (which comes back here)."""
        path, query = scope["path"], scope.get("query_string", b"").decode("latin-1")
        if scope["method"] in READS and is_page(path):
            wanted = path + (f"?{query}" if query else "")
            return _page(self.login_page(_local(wanted), ""), 401)
        given = "authorization" in headers or grant.session
        if grant.level == "read":
            message = "the read-only token cannot change anything: send the API token"
        elif given:
            message = "wrong API token"
        else:
            message = "this server needs its API token: send Authorization: Bearer <token>"
        return _error(401, "unauthorized", message, **{"WWW-Authenticate": 'Bearer realm="otto"'})


def _secured(send: Send, path: str) -> Send:
    """`send`, adding the security headers every answer carries (unless already set)."""
    page = not path.startswith("/v1/")

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            raw: list[tuple[bytes, bytes]] = list(message.get("headers", []))
            present = {k.lower() for k, _ in raw}
            extra: dict[bytes, str] = {
                b"x-content-type-options": "nosniff",
                b"referrer-policy": "same-origin",
            }
            if page:
                extra[b"content-security-policy"] = PAGE_CSP
                extra[b"x-frame-options"] = "DENY"
            raw += [(k, v.encode()) for k, v in extra.items() if k not in present]
            message = {**message, "headers": raw}
        await send(message)

    return sending
