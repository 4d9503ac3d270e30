"""`POST /v1/webhooks/github` (and `/gitea`, `/gitlab`) and `GET /v1/projects`.

The signature (`X-Hub-Signature-256`; Gitea's `X-Gitea-Signature`, GitLab's
`X-Gitlab-Token`) is checked over the raw body before anything is parsed;
the delivery id (`X-GitHub-Delivery`, …) is recorded so a redelivery creates
nothing. A push is acknowledged (202) as soon as it is queued; the Ottofile
is read and the pipeline created in the background.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otto.api import MAX_BODY, ApiError, Endpoint, json_body
from otto.limits import MAX_NAME, has_control
from otto.webhooks.forge import Forge, repository_names, verify_hex, verify_signature, verify_token
from otto.webhooks.gitlab import gitlab_names, gitlab_push
from otto.webhooks.ledger import Ledger, Push
from otto.webhooks.projects import Project

log = logging.getLogger("otto.webhooks")

SHA = frozenset("0123456789abcdef")


class ForgeHooks:
    def __init__(
        self,
        projects: Callable[[], list[Project]],
        ledger: Ledger,
        queued: Callable[[], None],
    ) -> None:
        self.projects, self.ledger, self.queued = projects, ledger, queued

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", "/v1/projects", self.list_projects, "Configured projects"),
            *(
                Endpoint(
                    "POST",
                    f"/v1/webhooks/{forge.name}",
                    self._hook(forge),
                    summary,
                    responses={
                        200: "ping, or a redelivery (`duplicate`)",
                        202: "accepted (a push is queued) or ignored",
                        401: f"missing or wrong {forge.secret_header}",
                        404: "no project for this repository",
                        413: "body over 25 MB",
                    },
                )
                for forge, summary in (
                    (GITHUB, "GitHub webhook (push, ping)"),
                    (GITEA, "Gitea webhook (push)"),
                    (GITLAB, "GitLab webhook (Push Hook, Tag Push Hook)"),
                )
            ),
        ]

    def list_projects(self, request: Request) -> Response:
        return JSONResponse({"projects": [p.public() for p in self.projects()]})

    def _hook(self, forge: Forge) -> Callable[[Request], Awaitable[Response]]:
        async def hook(request: Request) -> Response:
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > MAX_BODY:
                raise ApiError(413, "too_large", f"request body over {MAX_BODY} bytes")
            raw = await _read_limited(request)
            return await run_in_threadpool(self._receive, forge, request, raw)

        return hook

    def _receive(self, forge: Forge, request: Request, raw: bytes) -> Response:
        header = request.headers.get(forge.secret_header)
        signed = self._signed_by(forge, raw, header)  # before parsing anything
        event = request.headers.get(forge.event_header, "")
        delivery = forge.delivery(request.headers)
        if not delivery:
            what = " or ".join(forge.delivery_headers)
            raise ApiError(400, "missing_delivery", f"{what} header is missing")
        if not event:
            raise ApiError(400, "missing_event", f"{forge.event_header} header is missing")
        payload = _json(raw)
        project = _matching(forge, signed, payload, event)
        push, ignored = (None, f"event {event!r} is not handled")
        if event in forge.ping_events:
            ignored = "ping"
        elif event in forge.push_events:
            push, ignored = forge.push(project, delivery, payload)
        if not self.ledger.record(delivery, event, project.name, push, ignored):
            return JSONResponse({"duplicate": True, "delivery": delivery})
        if event in forge.ping_events:
            return JSONResponse({"ok": True, "project": project.name, "zen": payload.get("zen")})
        if push is None:
            log.info("delivery %s (%s) ignored: %s", delivery, project.name, ignored)
            return JSONResponse({"accepted": False, "ignored": ignored}, status_code=202)
        self.queued()
        return JSONResponse({"accepted": True, "delivery": delivery}, status_code=202)

    def _signed_by(self, forge: Forge, raw: bytes, header: str | None) -> list[Project]:
        """The projects whose secret signed this body; 401 if none did."""
        if not header:
            raise ApiError(401, "unsigned", f"{forge.secret_header} header is missing")
        signed = []
        for project in self.projects():
            secret = project.secret()
            if secret is not None and forge.verify(secret, raw, header):
                signed.append(project)
        if not signed:
            raise ApiError(401, "bad_signature", f"{forge.secret_header} does not match")
        return signed


def _matching(forge: Forge, signed: list[Project], payload: dict[str, Any], event: str) -> Project:
    """The project of the payload's repository, matched by clone URL or full name."""
    names = forge.names(payload)
    field = forge.repository_field
    if names is None:
        if event in forge.ping_events:
            return signed[0]  # an organisation's hook has no repository
        raise ApiError(422, "invalid_payload", f"{field}: missing", field=field)
    for project in signed:
        url = project.source.url
        if {url, url.removesuffix(".git")} & names:
            return project
    shown = sorted(names, key=lambda n: ("://" not in n, n))
    raise ApiError(
        404,
        "unknown_repository",
        f"no project for repository {shown[0] if shown else '?'!r}",
        field=field,
    )


async def _read_limited(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, "too_large", f"request body over {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(raw: bytes) -> dict[str, Any]:
    payload = json_body(raw)
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_payload", "request body is not a JSON object")
    return payload


def _push(project: Project, delivery: str, payload: dict[str, Any]) -> tuple[Push | None, str]:
    """The push to run, or None and why it is ignored; 400/422 for a malformed payload."""
    repository = payload["repository"]
    ref, sha = payload.get("ref"), payload.get("after")
    if not isinstance(ref, str) or not ref.startswith("refs/"):
        raise ApiError(422, "invalid_payload", "ref: expected refs/…", field="ref")
    if len(ref) > MAX_NAME or has_control(ref):
        message = f"ref: at most {MAX_NAME} characters, no control characters"
        raise ApiError(422, "invalid_payload", message, field="ref")
    if payload.get("deleted") is True:
        return None, f"{ref} was deleted"
    if not isinstance(sha, str) or len(sha) not in (40, 64) or not set(sha) <= SHA:
        raise ApiError(422, "invalid_payload", "after: expected a commit SHA", field="after")
    if set(sha) == {"0"}:
        return None, f"{ref} was deleted"
    if not project.wants(ref):
        return None, f"{ref} is outside the refspec {project.source.refspec}"
    full_name = repository.get("full_name")
    clone_url = project.source.url  # the project's spelling: one dedup key per repository
    push = Push(
        delivery,
        project.name,
        ref,
        sha,
        clone_url,
        full_name if isinstance(full_name, str) else None,
        message=_text(payload.get("head_commit"), "message").split("\n", 1)[0] or None,
        pusher=_text(payload.get("pusher"), "name") or None,
    )
    return push, ""


def _text(part: Any, key: str) -> str:
    """`part[key]` when `part` is an object holding a string there, else ''."""
    value = part.get(key) if isinstance(part, dict) else None
    return value if isinstance(value, str) else ""


GITHUB = Forge(
    "github",
    "X-Hub-Signature-256",
    verify_signature,
    "X-GitHub-Event",
    ("X-GitHub-Delivery",),
    frozenset({"push"}),
    frozenset({"ping"}),
    "repository",
    repository_names,
    _push,
)
GITEA = Forge(
    "gitea",
    "X-Gitea-Signature",
    verify_hex,
    "X-Gitea-Event",
    ("X-Gitea-Delivery",),
    frozenset({"push"}),
    frozenset(),
    "repository",
    repository_names,
    _push,  # Gitea's push payload has GitHub's shape
)
GITLAB = Forge(
    "gitlab",
    "X-Gitlab-Token",
    verify_token,
    "X-Gitlab-Event",
    ("Idempotency-Key", "X-Gitlab-Event-UUID"),  # the first is kept across GitLab's retries
    frozenset({"Push Hook", "Tag Push Hook"}),
    frozenset(),
    "project",
    gitlab_names,
    gitlab_push,
)
