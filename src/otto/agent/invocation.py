"""What an agent is asked to do: the invocation file of `otto agent --invocation FILE`.

A JSON object:

- `pipeline`: the pipeline's uuid; `context`: an `otto.model.Context`
- `object_store`: the store's URL for `otto.objectstore.open_store` (a path,
  `file://`, `s3://`, `http(s)://`)
- `workspace_root`: the context's workspace is `<workspace_root>/<pipeline>/<context>`
- `cache_dir`: kept between runs (git mirrors, step libraries); default
  `<workspace_root>/.cache`
- `report`: `{"type": "jsonl", "path": null, "hold": null}`: JSON lines on stdout, or
  appended to `path`; and also to `hold` when set, a file that keeps them for an
  orchestrator that re-adopts the agent after its own restart (the agent carries on
  when its stdout's reader is gone)
- `lease`: opaque (e.g. `{"id": ..., "epoch": 3}`), passed back in every report
- `secrets`: name → value, in the steps' environment, masked in logs
- `credentials`: name → value, the credentials the context's stage asked for: files in
  a private in-memory directory (`OTTO_CREDENTIALS`), served over the control socket
  (`RetrieveCredential`), masked in logs; never in the environment
- `passthrough`: name → value, variables the operator passes to every step
  (`agent_env_passthrough`); `variables`: name → value, what the run tells its steps
  of itself (`OTTO_EVENT`, `OTTO_BRANCH`, `OTTO_TAG`, `OTTO_SHA`, `OTTO_PR`,
  `OTTO_PROJECT`, a manual trigger's `-e` variables); `masked`: values never to appear
  in a log (the server's and orchestrator's own secrets), though no step is given them
- `sandbox`: how step processes run on this machine (`otto.isolation.SandboxSpec`);
  `container`: the container the context's steps run in, when its stage names an image
- `checkout`: optional `{"url", "sha", "branch"}`, cloned into the workspace first
- `libraries`: optional `[{"name", "version"}]`, step libraries the steps may call
- `kill_grace`: seconds from SIGTERM to SIGKILL when a step is stopped (default 10)
- `deadline`: optional, when the stage's time is up (Unix time, set by the PSM when the
  context was claimed: its `timeout`, else the server's `default_stage_timeout`): the
  running step is stopped, ends `Failed` with reason `timeout`, and so does the context
- `max_log_bytes`: a step log's size limit (default 1 GiB): past it the log keeps its
  first `max_log_bytes` bytes and a line saying it was cut, and the step is stopped and
  ends `Failed` with reason `log_limit`
"""

from __future__ import annotations

import json
import re
import uuid as uuidlib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator

from otto.isolation import ContainerSpec, SandboxSpec
from otto.model import CREDENTIAL_NAME, Checkout, Context
from otto.validation import first_error_text

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
DEFAULT_MAX_LOG_BYTES = 1 << 30  # a step's log; a runaway one must not fill the disk


class InvocationError(ValueError):
    """An invocation file that cannot be read or does not describe a run."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LibraryRef(_Strict):
    """A step library stored at `step-libraries/<name>/<version>.tar.gz`."""

    name: str = Field(pattern=NAME)
    version: str = Field(pattern=NAME)

    @property
    def key(self) -> str:
        return f"step-libraries/{self.name}/{self.version}.tar.gz"


class JsonLinesReport(_Strict):
    """Report as JSON lines on stdout (`path` null) or appended to a file; `hold`: a file
    each report is first appended to, kept for whoever re-adopts the agent."""

    type: Literal["jsonl"] = "jsonl"
    path: str | None = None
    hold: str | None = None


class Invocation(_Strict):
    pipeline: str
    context: Context
    object_store: str
    workspace_root: Path
    cache_dir: Path | None = None
    report: JsonLinesReport = Field(default_factory=JsonLinesReport)
    lease: dict[str, JsonValue] = Field(default_factory=dict)
    secrets: dict[str, str] = Field(default_factory=dict)
    credentials: dict[str, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)
    passthrough: dict[str, str] = Field(default_factory=dict)
    variables: dict[str, str] = Field(default_factory=dict)
    masked: list[str] = Field(default_factory=list)
    sandbox: SandboxSpec  # required: running unsandboxed is said by name, never a default
    container: ContainerSpec | None = None
    checkout: Checkout | None = None
    libraries: list[LibraryRef] = Field(default_factory=list)
    kill_grace: float = Field(default=10.0, ge=0)
    deadline: float | None = None
    max_log_bytes: int = Field(default=DEFAULT_MAX_LOG_BYTES, ge=1)

    @field_validator("pipeline")
    @classmethod
    def _uuid(cls, value: str) -> str:
        uuidlib.UUID(value)
        return value

    @field_validator("context")
    @classmethod
    def _context_uuid(cls, value: Context) -> Context:
        uuidlib.UUID(value.uuid)
        return value

    @field_validator("credentials")
    @classmethod
    def _credential_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.match(CREDENTIAL_NAME, name):
                raise ValueError(f"{name!r} cannot be the name of a credential")
        return value

    @field_validator("secrets", "passthrough", "variables")
    @classmethod
    def _secret_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"{name!r} cannot be the name of an environment variable")
        return value

    @property
    def workspace(self) -> Path:
        """This context's own workspace: parallel contexts never share one."""
        return self.workspace_root / self.pipeline / self.context.uuid

    @property
    def home(self) -> Path:
        """The steps' `$HOME`: the context's own, beside its workspace (a checkout's
        `git status` and an `archive '**'` never see it)."""
        return self.workspace_root / self.pipeline / f"{self.context.uuid}.home"

    @property
    def cache(self) -> Path:
        return self.cache_dir or self.workspace_root / ".cache"


def load_invocation(path: Path | str) -> Invocation:
    """Read and validate an invocation file; InvocationError says what is wrong."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except OSError as exc:
        raise InvocationError(f"cannot read invocation {path}: {exc.strerror or exc}") from None
    try:
        return Invocation.model_validate(json.loads(text))
    except ValueError as exc:
        raise InvocationError(f"{path}: {_describe(exc)}") from None


def _describe(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        return first_error_text(exc)
    return f"not valid JSON: {exc}"
