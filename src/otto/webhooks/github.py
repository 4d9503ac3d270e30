"""`POST /v1/webhooks/github` and `GET /v1/projects`.

The signature (`X-Hub-Signature-256`) is checked over the raw body before
anything is parsed; the delivery id (`X-GitHub-Delivery`) is recorded so a
redelivery creates nothing. A push is acknowledged (202) as soon as it is
queued; the Ottofile is read and the pipeline created in the background.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otto.api import MAX_BODY, ApiError, Endpoint
from otto.webhooks.ledger import Ledger, Push
from otto.webhooks.projects import Project
from otto.webhooks.signature import verify

log = logging.getLogger("otto.webhooks")

SHA = frozenset("0123456789abcdef")


class GithubHooks:
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
            Endpoint(
                "POST",
                "/v1/webhooks/github",
                self.github,
                "GitHub webhook (push, ping)",
                responses={
                    200: "ping, or a redelivery (`duplicate`)",
                    202: "accepted (a push is queued) or ignored",
                    401: "missing or wrong X-Hub-Signature-256",
                    404: "no project for this repository",
                    413: "body over 25 MB",
                },
            ),
        ]

    def list_projects(self, request: Request) -> Response:
        return JSONResponse({"projects": [p.public() for p in self.projects()]})

    async def github(self, request: Request) -> Response:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > MAX_BODY:
            raise ApiError(413, "too_large", f"request body over {MAX_BODY} bytes")
        raw = await _read_limited(request)
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(self._github, request, raw)

    def _github(self, request: Request, raw: bytes) -> Response:
        header = request.headers.get("x-hub-signature-256")
        signed = self._signed_by(raw, header)  # before parsing anything
        event = request.headers.get("x-github-event", "")
        delivery = request.headers.get("x-github-delivery", "").strip()
        if not delivery:
            raise ApiError(400, "missing_delivery", "X-GitHub-Delivery header is missing")
        if not event:
            raise ApiError(400, "missing_event", "X-GitHub-Event header is missing")
        payload = _json(raw)
        project = _matching(signed, payload, event)
        push, ignored = (None, f"event {event!r} is not handled")
        if event == "ping":
            ignored = "ping"
        elif event == "push":
            push, ignored = _push(project, delivery, payload)
        if not self.ledger.record(delivery, event, project.name, push, ignored):
            return JSONResponse({"duplicate": True, "delivery": delivery})
        if event == "ping":
            return JSONResponse({"ok": True, "project": project.name, "zen": payload.get("zen")})
        if push is None:
            log.info("delivery %s (%s) ignored: %s", delivery, project.name, ignored)
            return JSONResponse({"accepted": False, "ignored": ignored}, status_code=202)
        self.queued()
        return JSONResponse({"accepted": True, "delivery": delivery}, status_code=202)

    def _signed_by(self, raw: bytes, header: str | None) -> list[Project]:
        """The projects whose secret signed this body; 401 if none did."""
        if not header:
            raise ApiError(401, "unsigned", "X-Hub-Signature-256 header is missing")
        signed = []
        for project in self.projects():
            secret = project.secret()
            if secret is not None and verify(secret, raw, header):
                signed.append(project)
        if not signed:
            raise ApiError(401, "bad_signature", "X-Hub-Signature-256 does not match the body")
        return signed


def _matching(signed: list[Project], payload: dict[str, Any], event: str) -> Project:
    """The project of the payload's repository, matched by clone URL or full name."""
    repository = payload.get("repository")
    if not isinstance(repository, dict):
        if event == "ping":
            return signed[0]  # an organisation's hook has no repository
        raise ApiError(422, "invalid_payload", "repository: missing", field="repository")
    names = {repository.get(k) for k in ("clone_url", "html_url", "full_name", "ssh_url")}
    for project in signed:
        url = project.source.url
        if {url, url.removesuffix(".git")} & names:
            return project
    raise ApiError(
        404,
        "unknown_repository",
        f"no project for repository {repository.get('clone_url') or repository.get('full_name')!r}",
        field="repository.clone_url",
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
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"request body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_payload", "request body is not a JSON object")
    return payload


def _push(project: Project, delivery: str, payload: dict[str, Any]) -> tuple[Push | None, str]:
    """The push to run, or None and why it is ignored; 400/422 for a malformed payload."""
    repository = payload["repository"]
    ref, sha = payload.get("ref"), payload.get("after")
    if not isinstance(ref, str) or not ref.startswith("refs/"):
        raise ApiError(422, "invalid_payload", "ref: expected refs/…", field="ref")
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
    )
    return push, ""
