"""`POST /v1/webhooks/github` (and `/gitea`, `/gitlab`) and `GET /v1/projects`.

The signature (`X-Hub-Signature-256`; Gitea's `X-Gitea-Signature`, GitLab's
`X-Gitlab-Token`) is checked over the raw body before anything is parsed (GitHub's
form-encoded body too: its JSON is the `payload` field; another content type is a 415);
the delivery id (`X-GitHub-Delivery`, …) is recorded so a redelivery creates
nothing: it is answered with the run the first delivery came to, as is a push of a
commit that already has a run (not a tag push's, nor a pull request's: they run again,
`otto.webhooks.pulls`). A push is acknowledged (202) as soon as it is queued;
the Ottofile is read and the pipeline created in the background. Every request,
refused ones too, is logged and listed by `GET /v1/webhooks/deliveries`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otto.endpoints import MAX_BODY, ApiError, Endpoint, json_body, query_int
from otto.limits import MAX_NAME, has_control
from otto.psm.records import iso
from otto.serverlog import fields
from otto.webhooks.forge import Forge, repository_names, verify_hex, verify_signature, verify_token
from otto.webhooks.gitlab import gitlab_names, gitlab_push
from otto.webhooks.inbox import BUILT, IGNORED, QUEUED, REDELIVERY, REFUSED, Inbox, Push, Received
from otto.webhooks.projects import Project
from otto.webhooks.pulls import as_tag, github_pull, gitlab_merge_request
from otto.webhooks.statuses import run_page

log = logging.getLogger("otto.webhooks")

SHA = frozenset("0123456789abcdef")
JSON, FORM = "application/json", "application/x-www-form-urlencoded"
FORKS_NEED_A_TOKEN = (
    "a fork's pull request runs only on a server with an API token: without one its steps"
    " could use the API as any local process can"
)
DEFAULT_RECEIVED, MAX_RECEIVED = 50, 500  # GET /v1/webhooks/deliveries: ?limit=
LIMIT_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_RECEIVED, "default": 50}


class ForgeHooks:
    def __init__(
        self,
        projects: Callable[[], list[Project]],
        inbox: Inbox,
        queued: Callable[[], None],
        built: Callable[[str, str], str | None],
        public_url: str,
        forks: bool = True,
    ) -> None:
        """`forks`: whether a fork's pull request may run at all (not on a server whose API
        needs no token: the fork's steps could use it)."""
        self.projects, self.inbox, self.queued = projects, inbox, queued
        self.built, self.public_url, self.forks = built, public_url, forks

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
                        200: "ping; a redelivery, or a commit already built (`duplicate`, with"
                        " the run's `uuid` and `url`)",
                        202: "accepted (a push is queued) or ignored",
                        400: "a header is missing, or the body is not JSON (nor a form"
                        " whose `payload` is)",
                        401: f"missing or wrong {forge.secret_header}",
                        404: "no project has the repository's clone URL as `source.url`",
                        413: "body over 25 MB",
                        415: "a Content-Type other than "
                        + " or ".join(forge.content_types)
                        + " (named)",
                        422: "a payload field is missing or invalid (named)",
                    },
                )
                for forge, summary in (
                    (GITHUB, "GitHub webhook (push, pull_request, ping)"),
                    (GITEA, "Gitea webhook (push, pull_request)"),
                    (GITLAB, "GitLab webhook (Push Hook, Tag Push Hook, Merge Request Hook)"),
                )
            ),
            Endpoint(
                "GET",
                "/v1/webhooks/deliveries",
                self.list_received,
                "Incoming webhook deliveries, newest first: when, forge, event, delivery id,"
                " verdict (refused, ignored, redelivery, built, queued, created, aborted),"
                " why, run",
                responses={200: "the latest deliveries", 400: "a bad `limit` (names it)"},
                query={
                    "limit": {
                        "description": "how many, the latest",
                        "schema": LIMIT_SCHEMA,
                    }
                },
            ),
        ]

    def list_projects(self, request: Request) -> Response:
        return JSONResponse({"projects": [p.public() for p in self.projects()]})

    def list_received(self, request: Request) -> Response:
        unknown = sorted(set(request.query_params) - {"limit"})
        if unknown:
            raise ApiError(400, "invalid_query", f"{unknown[0]}: not a parameter", field=unknown[0])
        limit = query_int(request, "limit", DEFAULT_RECEIVED, minimum=1)
        if limit > MAX_RECEIVED:
            raise ApiError(400, "invalid_query", f"limit: at most {MAX_RECEIVED}", field="limit")
        found = self.inbox.received(limit)
        return JSONResponse({"deliveries": [self._shown(r) for r in found]})

    def _shown(self, r: Received) -> dict[str, Any]:
        url = run_page(self.public_url, r.pipeline) if r.pipeline else None
        return {
            "received_at": iso(r.received_at),
            "forge": r.forge,
            "event": r.event,
            "delivery": r.delivery,
            "project": r.project,
            "verdict": r.verdict,
            "reason": r.reason,
            "status": r.status,
            "pipeline": r.pipeline,
            "url": url,
        }

    def _hook(self, forge: Forge) -> Callable[[Request], Awaitable[Response]]:
        async def hook(request: Request) -> Response:
            received = Received(
                forge.name,
                request.headers.get(forge.event_header, ""),
                forge.delivery(request.headers),
                REFUSED,
                0,
            )
            try:
                length = request.headers.get("content-length", "")
                if length.isdigit() and int(length) > MAX_BODY:
                    raise ApiError(413, "too_large", f"request body over {MAX_BODY} bytes")
                raw = await _read_limited(request)
                return await run_in_threadpool(self._receive, forge, request, raw, received)
            except ApiError as err:
                await run_in_threadpool(self._refuse, received, err)
                raise

        return hook

    def _refuse(self, received: Received, err: ApiError) -> None:
        refused = replace(received, status=err.status, reason=err.message)
        log.warning("webhook refused", extra=_said(refused))
        self.inbox.refused(refused)

    def _receive(self, forge: Forge, request: Request, raw: bytes, received: Received) -> Response:
        header = request.headers.get(forge.secret_header)
        signed = self._signed_by(forge, raw, header)  # before parsing anything
        event, delivery = received.event, received.delivery
        if not delivery:
            what = " or ".join(forge.delivery_headers)
            raise ApiError(400, "missing_delivery", f"{what} header is missing")
        if not event:
            raise ApiError(400, "missing_event", f"{forge.event_header} header is missing")
        payload = _payload(forge, request.headers.get("content-type"), raw)
        project = _matching(forge, signed, payload, event)
        push, ignored = (None, f"event {event!r} is not handled")
        if event in forge.ping_events:
            ignored = "ping"
        elif event in forge.push_events:
            push, ignored = forge.push(project, delivery, payload)
        elif forge.pull is not None and event in forge.pull_events:
            push, ignored = forge.pull(project, delivery, payload)
            if push is not None and (push.details or {}).get("fork") and not self.forks:
                push, ignored = None, FORKS_NEED_A_TOKEN
        received = replace(received, project=project.name)
        if push is None:
            verdict = replace(received, verdict=IGNORED, status=202, reason=ignored)
        elif not push.force and (run := self.built(push.clone_url, push.sha)) is not None:
            reason = f"commit {push.sha} already built"
            verdict = replace(received, verdict=BUILT, status=200, reason=reason, pipeline=run)
        else:
            verdict = replace(received, verdict=QUEUED, status=202)
        if event in forge.ping_events:
            verdict = replace(verdict, status=200)
        done = self.inbox.record(verdict, push if verdict.verdict == QUEUED else None)
        log.info("webhook %s", done.verdict, extra=_said(done, push))
        return self._answer(done, payload)

    def _answer(self, done: Received, payload: dict[str, Any]) -> Response:
        found = {"uuid": done.pipeline, "url": run_page(self.public_url, done.pipeline)}
        if done.verdict == REDELIVERY:
            body = {"duplicate": True, "delivery": done.delivery, "reason": done.reason}
            return JSONResponse({**body, **(found if done.pipeline else {})})
        if done.reason == "ping":
            return JSONResponse({"ok": True, "project": done.project, "zen": payload.get("zen")})
        if done.verdict == IGNORED:
            return JSONResponse({"accepted": False, "ignored": done.reason}, status_code=202)
        if done.verdict == BUILT:
            body = {"accepted": False, "duplicate": True, "reason": done.reason, **found}
            return JSONResponse(body)
        self.queued()
        return JSONResponse({"accepted": True, "delivery": done.delivery}, status_code=202)

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


def _said(r: Received, push: Push | None = None) -> dict[str, Any]:
    """The fields of a received delivery's log line."""
    return fields(
        forge=r.forge, event=r.event or None, delivery=r.delivery or None, project=r.project,
        ref=push.ref if push else None, sha=push.sha if push else None,
        status=r.status, why=r.reason or None, run=r.pipeline,
    )  # fmt: skip


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
    where, clone_url = forge.clone_url(payload)
    raise ApiError(
        404,
        "unknown_repository",
        f"no project has source.url {clone_url!r} (the payload's {where})",
        field=where,
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


def _payload(forge: Forge, content_type: str | None, raw: bytes) -> dict[str, Any]:
    """The payload of a body of one of the forge's content types (GitHub's form-encoded
    body holds the JSON in its `payload` field); 415 naming them for any other."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in forge.content_types:
        expected = " or ".join(forge.content_types)
        message = f"Content-Type {media or '(none)'!r}: expected {expected}"
        raise ApiError(415, "unsupported_media_type", message, accepted=list(forge.content_types))
    return _json(_form_payload(raw) if media == FORM else raw)


def _form_payload(raw: bytes) -> bytes:
    """The `payload` field of a form-encoded body."""
    try:
        form = parse_qs(raw.decode("ascii"), strict_parsing=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid_form", "request body is not a URL-encoded form") from None
    found = form.get("payload")
    if not found or len(found) != 1:
        raise ApiError(400, "invalid_form", "payload: the form has no single `payload` field",
                       field="payload")  # fmt: skip
    return found[0].encode()


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
    tagged = _text(payload.get("head_commit"), "id")
    if ref.startswith("refs/tags/") and len(tagged) == 40 and set(tagged) <= SHA:
        sha = tagged  # an annotated tag's `after` is the tag object: run its commit
    push = Push(
        delivery,
        project.name,
        ref,
        sha,
        clone_url,
        full_name if isinstance(full_name, str) else None,
        message=_message(payload, sha),
        pusher=_pusher(payload.get("pusher")),
    )
    return as_tag(push), ""


def _message(payload: dict[str, Any], sha: str) -> str | None:
    """The first line of the pushed commit's message: `head_commit`'s (GitHub), else the
    pushed commit's entry in `commits[]` or its last (Gitea sends no `head_commit`)."""
    text = _text(payload.get("head_commit"), "message")
    commits = payload.get("commits")
    if not text and isinstance(commits, list) and commits:
        pushed = [c for c in commits if isinstance(c, dict) and c.get("id") == sha]
        text = _text((pushed or commits)[-1], "message")
    return text.split("\n", 1)[0] or None


def _pusher(pusher: Any) -> str | None:
    """Who pushed: GitHub's `pusher.name`, Gitea's `pusher.login` or `pusher.username`."""
    return _text(pusher, "name") or _text(pusher, "login") or _text(pusher, "username") or None


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
    content_types=(JSON, FORM),  # GitHub's default is the form
    pull_events=frozenset({"pull_request"}),
    pull=github_pull,
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
    pull_events=frozenset({"pull_request"}),
    pull=github_pull,  # and so has its pull_request payload
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
    "project.git_http_url",
    pull_events=frozenset({"Merge Request Hook"}),
    pull=gitlab_merge_request,
)
