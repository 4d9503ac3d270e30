"""Housekeeping's HTTP API: `otto gc`, a remote orchestrator's workspace sweep, a
project's disk use, and its status badge."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otto.endpoints import ApiError, Endpoint, parse_body
from otto.housekeeping.badge import badge_svg
from otto.housekeeping.janitor import COMPLETE, Housekeeper
from otto.psm.store.base import Tx

BADGE_MAX_AGE = 60  # seconds a badge may be cached
MAX_WORKSPACES = 10000  # pipelines a sweep may ask about at once
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class GcRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False  # list what the policy lets go, free nothing


class WorkspacesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # the runs whose workspaces an orchestrator holds
    pipelines: list[str] = Field(max_length=MAX_WORKSPACES)


class HousekeepingApi:
    """`project_view(name)`: the project as `GET /v1/projects` shows it, None if unknown."""

    def __init__(
        self, keeper: Housekeeper, project_view: Callable[[str], dict[str, Any] | None]
    ) -> None:
        self.keeper, self.project_view = keeper, project_view

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint(
                "POST",
                "/v1/gc",
                self.gc,
                "Free what the retention policy lets go (`dry_run`: only list it)",
                body=GcRequest,
            ),
            Endpoint(
                "POST",
                "/v1/gc/workspaces",
                self.workspaces,
                "Of an orchestrator's workspaces, those the retention policy lets go",
                body=WorkspacesRequest,
            ),
            Endpoint(
                "GET",
                "/v1/projects/{name}",
                self.project,
                "A project, with its disk use",
                responses={200: "OK", 404: "no such project"},
            ),
            Endpoint(
                "GET",
                "/v1/projects/{name}/badge.svg",
                self.badge,
                "An SVG badge: the status of the latest complete run (on a branch)",
                responses={
                    200: "an SVG image",
                    400: "a bad branch",
                    404: "no such project",
                },
                query={
                    "branch": {
                        "description": "a branch (or a full ref); default: any",
                        "schema": {"type": "string", "maxLength": 255},
                    }
                },
            ),
        ]

    def gc(self, request: Request) -> Response:
        asked = parse_body(GcRequest, request.state.body)
        plan = self.keeper.plan()
        done = plan if asked.dry_run else self.keeper.free(plan)
        return JSONResponse({"dry_run": asked.dry_run, **done.to_json()})

    def workspaces(self, request: Request) -> Response:
        asked = parse_body(WorkspacesRequest, request.state.body)
        return JSONResponse({"remove": self.keeper.removable_workspaces(asked.pipelines)})

    def project(self, request: Request) -> Response:
        name = request.path_params["name"]
        shown = self._known(name)
        return JSONResponse({**shown, "disk": self.keeper.disk_use(name)})

    def badge(self, request: Request) -> Response:
        name = request.path_params["name"]
        self._known(name)
        branch = request.query_params.get("branch")
        if branch is not None and (not branch or len(branch) > 255 or _CONTROL.search(branch)):
            message = "branch: a branch name of 1 to 255 printable characters"
            raise ApiError(400, "invalid_query", message, field="branch")
        status = self.keeper.store.read(lambda tx: _latest_status(tx, name, branch))
        return Response(
            badge_svg("build", status),
            media_type="image/svg+xml",
            headers={
                "Cache-Control": f"max-age={BADGE_MAX_AGE}",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            },
        )

    def _known(self, name: str) -> dict[str, Any]:
        shown = self.project_view(name)
        if shown is None:
            raise ApiError(404, "not_found", f"no project {name!r}", field="name")
        return shown


def _latest_status(tx: Tx, project: str, branch: str | None) -> str | None:
    """The status of the project's newest complete run (on `branch`), None if none."""
    sql = "SELECT status FROM pipelines WHERE project = ? AND state = ?"
    params: list[Any] = [project, COMPLETE]
    if branch is not None:
        sql += " AND ref = ?"
        params.append(branch if branch.startswith("refs/") else f"refs/heads/{branch}")
    row = tx.one(sql + " ORDER BY created_at DESC, uuid DESC LIMIT 1", *params)
    return None if row is None else row["status"]
