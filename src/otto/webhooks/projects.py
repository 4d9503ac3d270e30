"""Projects: `$OTTO_HOME/projects.d/*.yml`, one repository each.

A project names its repository (`source.url`, the clone URL a forge sends as
`repository.clone_url`), which refs trigger runs, where the Ottofile is, the
environment variable holding the webhook secret (never the secret itself),
whether contexts start with a checkout, where commit statuses go, who
else hears of its runs (outbound webhook subscribers), and when it runs by itself
(`schedules`, cron expressions: `otto.webhooks.schedules`). A file that cannot be
used is reported with every problem at once, each at its line, naming the key
(`line 7: unknown key 'secert_env' (did you mean 'secret_env'?)`); the others load.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from otto.housekeeping.policy import Retention
from otto.psm.states import ALLOWED
from otto.redact import redact_url
from otto.status import Status
from otto.validation import mistakes

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
PROJECT_FILES = ("*.yml", "*.yaml")  # in projects.d
Entity = Literal["pipeline", "batch", "context", "step"]
ENTITIES: list[Entity] = ["pipeline", "batch", "context", "step"]
# Every state any entity can reach, and every outcome status: what `states` may name.
STATE_NAMES = sorted({s for table in ALLOWED.values() for s in table} | {s.value for s in Status})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    url: str = Field(min_length=1)
    refspec: list[str] = Field(default_factory=lambda: ["*"])  # globs on branch/tag names


class PipelineSource(_Strict):
    path: str = Field("Ottofile", min_length=1)
    inline: str | None = None  # overrides the repository's file


class Statuses(_Strict):
    api_url: str = "https://api.github.com"
    token_env: str | None = None
    context: str = Field("otto", min_length=1)
    unstable_as: Literal["success", "failure"] = "success"


class Subscriber(_Strict):
    """An outbound webhook: transitions of the project's runs, POSTed as signed JSON."""

    url: str = Field(pattern=r"^https?://[^\s/]+\S*$")
    secret_env: str = Field(min_length=1)  # the variable holding the signing secret
    entities: list[Entity] = Field(default_factory=lambda: list(ENTITIES), min_length=1)
    states: list[str] = Field(default_factory=list)  # to-states or statuses; empty: all

    @field_validator("states")
    @classmethod
    def _known(cls, states: list[str]) -> list[str]:
        for state in states:
            if state not in STATE_NAMES:
                raise ValueError(f"unknown state {state!r}; one of {', '.join(STATE_NAMES)}")
        return states

    def wants(self, entity: str, to_state: str, status: str | None) -> bool:
        """Does a transition of `entity` to `to_state` (with `status`) go to this subscriber?"""
        if entity not in self.entities:
            return False
        return not self.states or to_state in self.states or status in self.states


class Schedule(_Strict):
    """A run at every due time of `cron` (five fields, or six: the sixth is seconds), read
    in `timezone`, of `ref` (the project's default branch when omitted)."""

    cron: str = Field(min_length=1, max_length=200)
    ref: str | None = Field(None, min_length=1, max_length=255)
    timezone: str = Field("UTC", min_length=1, max_length=100)

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str) -> str:
        if not croniter.is_valid(cron):
            raise ValueError(f"not a cron expression: {cron!r} (e.g. '0 3 * * *')")
        return cron

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str) -> str:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r} (e.g. 'UTC', 'Europe/Paris')") from None
        return zone

    def key(self) -> str:
        """Stable across reloads while cron, ref and time zone stay the same."""
        said = json.dumps([self.cron, self.ref, self.timezone])
        return hashlib.sha256(said.encode()).hexdigest()[:16]


class PullRequests(_Strict):
    """Whether pull (merge) requests run, and which commit: the request's head, or the
    merge the forge made of it with its target branch (the head when it names none)."""

    enabled: bool = True
    build: Literal["head", "merge"] = "head"


class Project(_Strict):
    name: str = Field(pattern=NAME)  # the file's stem
    title: str = ""
    description: str = ""
    source: Source
    pipeline: PipelineSource = Field(default_factory=PipelineSource)
    secret_env: str = Field(min_length=1)
    checkout: bool = True
    statuses: Statuses | None = None
    supersede: Literal["none", "pending", "running"] = "none"
    pull_requests: PullRequests = Field(default_factory=PullRequests)
    # A fork's request: never run, or run untrusted (sandboxed, no passthrough variables).
    forks: Literal["never", "sandboxed"] = "sandboxed"
    # True: a request's commit that already ran (as a push) does not run again.
    dedup_pull_requests: bool = False
    default_branches: list[str] = Field(default_factory=lambda: ["main", "master"])
    webhooks: list[Subscriber] = Field(default_factory=list)
    retention: Retention | None = None  # overrides of the server's retention settings
    schedules: list[Schedule] = Field(default_factory=list, max_length=100)

    def secret_variables(self) -> list[str]:
        """The variables holding this project's secrets (signing, status, outbound)."""
        named = [self.secret_env, *(hook.secret_env for hook in self.webhooks)]
        if self.statuses is not None and self.statuses.token_env:
            named.append(self.statuses.token_env)
        return named

    def secret(self) -> bytes | None:
        value = os.environ.get(self.secret_env)
        return value.encode() if value else None

    def wants(self, ref: str) -> bool:
        """Does a push to `ref` (e.g. `refs/heads/main`) trigger a run?"""
        name = short_ref(ref)
        return any(
            fnmatch.fnmatchcase(name, g) or fnmatch.fnmatchcase(ref, g) for g in self.source.refspec
        )

    def public(self) -> dict[str, Any]:
        """As `GET /v1/projects` shows it: secrets are named by their variables, and URLs
        show no credentials (`https://***@host/…`)."""
        shown = self.model_dump(mode="json")
        shown["source"]["url"] = redact_url(self.source.url)
        if shown["statuses"] is not None:
            shown["statuses"]["api_url"] = redact_url(shown["statuses"]["api_url"])
        for hook in shown["webhooks"]:
            hook["url"] = redact_url(hook["url"])
        return shown


def short_ref(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix) :]
    return ref


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"

    def at_line(self) -> str:
        """`line 7: unknown key …`: the problem within its file."""
        return f"line {self.line}: {self.message}"


def load_projects(directory: Path) -> tuple[list[Project], list[Problem]]:
    """Every project in `directory` (`*.yml`, `*.yaml`), and what is wrong with the others."""
    projects: list[Project] = []
    problems: list[Problem] = []
    if not directory.is_dir():
        return projects, problems
    files = sorted(file for pattern in PROJECT_FILES for file in directory.glob(pattern))
    for file in files:
        loaded = _load_one(file)
        if isinstance(loaded, list):
            problems += loaded
        elif any(p.source.url == loaded.source.url for p in projects):
            problems.append(Problem(file, 1, f"another project already has {loaded.source.url}"))
        else:
            projects.append(loaded)
    return projects, problems


def _load_one(file: Path) -> Project | list[Problem]:
    """The project of `file`, or every problem with it (each at its own line)."""
    try:
        text = file.read_text(encoding="utf-8")
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except OSError as exc:
        return [Problem(file, 1, f"cannot read: {exc.strerror or exc}")]
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        line = min(line, max(1, len(text.splitlines())))  # "end of stream": the last line
        return [Problem(file, line, f"not valid YAML: {exc.problem or exc}")]
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return [Problem(file, 1, f"not valid YAML: {exc}")]
    if not isinstance(data, dict):
        return [Problem(file, 1, "expected a mapping (title, source, secret_env, …)")]
    try:
        return Project.model_validate({**data, "name": file.stem})
    except ValidationError as exc:
        found = [Problem(file, _line_of(node, m.loc), m.message) for m in mistakes(exc, Project)]
        return sorted(found, key=lambda p: p.line)


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int:
    """The line of the deepest node along `loc` that exists in the file."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if k.value == part]
            if not found:
                break
            line, node = found[0][0].start_mark.line + 1, found[0][1]
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value)
        ):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
