"""`/v1/credentials`: values go in, never out. Every call needs the full API token
(`otto.auth.needs_token`), reads included; a server without a token keeps no credentials
(every call a 403): without one, every local process, a step included, could use them."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otto.credentials import NAME, Credentials
from otto.endpoints import ApiError, Endpoint, parse_body

MAX_VALUE_BYTES = 64 * 1024
PROJECT = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
BY_HEADER = "X-Otto-User"  # who the client says sets it (`otto credentials set`: user@host)
_PRINTABLE = re.compile(r"^[\x20-\x7e]{1,200}$")


class SetCredential(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str = Field(min_length=1, max_length=MAX_VALUE_BYTES)
    project: str | None = Field(default=None, pattern=PROJECT)  # none: every project


NO_TOKEN = (
    "credentials need a server with an API token (OTTO_TOKEN, or `token:` in the config "
    "file): without one, any local process, a step included, could set or use them"
)


NO_TOKEN_ANSWER = "the server has no API token"


class CredentialsApi:
    def __init__(self, credentials: Credentials | None) -> None:
        """`credentials`: the store, None on a server without an API token."""
        self._credentials = credentials

    @property
    def credentials(self) -> Credentials:
        if self._credentials is None:
            raise ApiError(403, "token_required", NO_TOKEN)
        return self._credentials

    def endpoints(self) -> list[Endpoint]:
        scope = {
            "project": {
                "description": "the credential of this project; default: the global one",
                "schema": {"type": "string", "pattern": PROJECT},
            }
        }
        return [
            Endpoint(
                "GET",
                "/v1/credentials",
                self.list,
                "Credentials: names, scopes, who set them and when (never values)",
                responses={200: "OK", 403: NO_TOKEN_ANSWER},
            ),
            Endpoint(
                "PUT",
                "/v1/credentials/{name}",
                self.set,
                "Set a credential (for `project`, else for every project)",
                body=SetCredential,
                responses={
                    200: "OK",
                    400: "a bad name",
                    403: NO_TOKEN_ANSWER,
                    422: "a bad value or project",
                },
                headers={BY_HEADER: "who sets it, as the client says (e.g. user@host)"},
            ),
            Endpoint(
                "DELETE",
                "/v1/credentials/{name}",
                self.remove,
                "Remove a credential (of `project`, else the global one)",
                responses={
                    200: "OK",
                    400: "a bad name or project",
                    403: NO_TOKEN_ANSWER,
                    404: "no such credential",
                },
                query=scope,
            ),
        ]

    def list(self, request: Request) -> Response:
        return JSONResponse({"credentials": self.credentials.list()})

    def set(self, request: Request) -> Response:
        name = _name(request)
        asked = parse_body(SetCredential, request.state.body)
        by = request.headers.get(BY_HEADER, "")
        by = by if _PRINTABLE.match(by) else "api"
        return JSONResponse(self.credentials.set(name, asked.value, asked.project, by))

    def remove(self, request: Request) -> Response:
        name = _name(request)
        project = request.query_params.get("project") or None
        if project is not None and not re.match(PROJECT, project):
            raise ApiError(400, "invalid_query", "project: not a project name", field="project")
        if not self.credentials.remove(name, project):
            where = f"project {project}" if project else "every project"
            raise ApiError(404, "not_found", f"no credential {name} for {where}")
        return JSONResponse({"removed": name, "project": project})


def _name(request: Request) -> str:
    name = request.path_params["name"]
    if not re.match(NAME, name):
        message = "name: 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        raise ApiError(400, "invalid_name", message, field="name")
    return name
