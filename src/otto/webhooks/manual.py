"""Runs nobody pushed: `POST /v1/projects/{name}/runs` (`otto trigger`, the dashboard's
Run button) and the project schedules (`otto.webhooks.schedules`).

Either starts a run of the project's repository at a ref (its first default branch that
exists when none is named) or at a commit, resolved with `git ls-remote` and fetched into
the mirror, then through the push worker's own path (Ottofile at that commit → pipeline →
PSM): an Ottofile that does not parse gives the same visible `config_error` run. Such a
run always runs, even when its commit already ran.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otto.endpoints import ApiError, Endpoint, parse_body
from otto.webhooks.inbox import Push
from otto.webhooks.mirror import Mirrors, NoSuchRef, Unreachable, without_credentials
from otto.webhooks.projects import Project
from otto.webhooks.worker import PushWorker

MAX_ENV = 50  # variables a manual run may set
MAX_ENV_VALUE = 4096  # characters of one

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
VariableValue = Annotated[str, Field(max_length=MAX_ENV_VALUE)]


class RunRequest(BaseModel):
    """A run by hand: at `ref` (a branch or tag; the default branch when neither it nor
    `sha` is given) or at commit `sha`; `env`: variables for its steps; `by`: who asks."""

    model_config = ConfigDict(extra="forbid")

    ref: str | None = Field(
        None, min_length=1, max_length=255, pattern=r"^[A-Za-z0-9_][^\s~^:?*\[\\]*$"
    )
    sha: str | None = Field(None, pattern=r"^[0-9a-f]{40}$")
    env: dict[str, VariableValue] = Field(default_factory=dict, max_length=MAX_ENV)
    by: str = Field("api", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$")

    @field_validator("env")
    @classmethod
    def _names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not VARIABLE_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a variable name (letters, digits and _)")
        return env

    @field_validator("ref")
    @classmethod
    def _ref(cls, ref: str | None) -> str | None:
        if ref is not None and (".." in ref or ref.endswith((".", "/", ".lock"))):
            raise ValueError(f"not a branch or tag name: {ref!r}")
        return ref


@dataclass(frozen=True)
class Started:
    uuid: str
    sha: str
    ref: str | None  # in full (`refs/heads/main`); None for a bare commit


class RefNotFound(Exception):
    """The project's repository has no such ref, or no such commit (the message says)."""


class Starter:
    """Starts a run of a project's repository at a ref or commit, as a push would."""

    def __init__(self, worker: PushWorker, mirrors: Mirrors) -> None:
        self.worker, self.mirrors = worker, mirrors

    def start(
        self,
        project: Project,
        *,
        event: str,
        ref: str | None = None,
        sha: str | None = None,
        by: str | None = None,
        details: dict[str, Any] | None = None,
        idempotency: str | None = None,
    ) -> Started:
        """RefNotFound when `ref` or `sha` is not in the repository; Unreachable when the
        repository cannot be read. With an `idempotency` key, a second start answers the
        run the first one created."""
        full, tip = self._resolve(project, ref) if ref or not sha else (None, "")
        if sha is None:  # the ref's commit: the repository has it
            sha = tip
            self.mirrors.fetch(project.source.url, sha, full)
        else:
            try:
                self.mirrors.fetch(project.source.url, sha)
            except Unreachable as exc:
                raise RefNotFound(str(exc)) from None
        push = Push(
            delivery=f"{event}:{uuid.uuid4()}",
            project=project.name,
            ref=full or "",
            sha=sha,
            clone_url=project.source.url,
            full_name=_full_name(project.source.url),  # where its commit status goes
            pusher=by,
            event=event,
            details=details,
        )
        created, _ = self.worker.create_run(project, push, force=True, idempotency=idempotency)
        return Started(created.uuid, sha, full)

    def _resolve(self, project: Project, ref: str | None) -> tuple[str, str]:
        if ref is not None:
            try:
                return self.mirrors.resolve(project.source.url, ref)
            except NoSuchRef as exc:
                raise RefNotFound(str(exc)) from None
        for branch in project.default_branches:
            try:
                return self.mirrors.resolve(project.source.url, f"refs/heads/{branch}")
            except NoSuchRef:
                continue
        named = ", ".join(project.default_branches)
        raise RefNotFound(f"none of the default branches ({named}) is in the repository")


class RunsApi:
    def __init__(self, starter: Starter, projects: Callable[[str], Project | None]) -> None:
        self.starter, self.project = starter, projects

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(
                "POST",
                "/v1/projects/{name}/runs",
                self.create,
                "Start a run of the project's repository at a ref (default: its default"
                " branch) or commit, recorded as `manual by <by>`; it runs even when the"
                " commit already ran",
                body=RunRequest,
                responses={
                    201: "the run: uuid, sha, ref (a run whose Ottofile cannot be used is"
                    " created too, complete with status Error, showing why)",
                    404: "no such project",
                    422: "a field is invalid, or the ref or commit is not in the repository",
                    502: "the project's repository cannot be read",
                },
            )
        ]

    def create(self, request: Request) -> Response:
        name = request.path_params["name"]
        project = self.project(name)
        if project is None:
            raise ApiError(404, "not_found", f"no project {name!r}", field="name")
        asked = parse_body(RunRequest, request.state.body)
        try:
            started = self.starter.start(
                project,
                event="manual",
                ref=asked.ref,
                sha=asked.sha,
                by=asked.by,
                details={"env": asked.env},
            )
        except RefNotFound as exc:
            field = "ref" if asked.ref or not asked.sha else "sha"
            raise ApiError(422, "unknown_ref", str(exc), field=field) from None
        except Unreachable as exc:
            said = without_credentials(_first_line(str(exc)))
            raise ApiError(502, "unreachable", f"cannot read the repository: {said}") from None
        answer = {"uuid": started.uuid, "sha": started.sha, "ref": started.ref}
        return JSONResponse(answer, status_code=201)


def _full_name(url: str) -> str | None:
    """`owner/name` of a clone URL (`https://github.com/acme/app.git`), as forges name it."""
    found = re.match(r"^(?:[a-z+]+://[^/]*/|[^@/]+@[^:/]+:)(.+?)(?:\.git)?/?$", url)
    return found.group(1) if found and "/" in found.group(1) else None


def _first_line(text: str) -> str:
    return re.split(r"[\r\n]", text.strip(), maxsplit=1)[0][:300]
