"""What the PSM hands out and records: transitions, their causes, leases, work orders."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from otto.conditions import Trigger
from otto.model import Checkout, Context


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass(frozen=True, slots=True)
class About:
    """Where a run came from, for people: shown by the dashboard and `otto ps`."""

    project: str | None = None
    trigger: str | None = None  # who or what started it: "push by alice", "otto run", …
    message: str | None = None  # the commit message's first line, when known
    # What kind of trigger (`EVENTS`; None: an API client's run) and what it said, e.g.
    # {"number": 12, "source_branch": …, "target_branch": …, "fork": False} for a PR,
    # {"tag": "v1.0"}, {"late": True} for a schedule that fired after a restart.
    event: str | None = None
    details: dict[str, Any] | None = None


# The kinds of trigger a run records (`About.event`); conditions and variables read them.
EVENTS = ("push", "tag", "pull_request", "manual", "schedule")


@dataclass(frozen=True)
class Cause:
    """Who caused a change and why; every transition records it."""

    actor: str
    reason: str | None = None  # a `Reason`, or an executor's own words
    data: dict[str, Any] | None = None  # carried by every transition it causes


class Transition(NamedTuple):
    """One entry of the transition log (immutable; a tuple: the writer makes dozens per
    run, and a frozen dataclass costs several times as much to build)."""

    seq: int
    pipeline: str
    entity: str
    id: str
    from_state: str | None
    to_state: str
    status: str | None
    reason: str | None
    actor: str
    at: float
    data: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Transition:
        data = row["data"]
        return cls(
            seq=row["seq"],
            pipeline=row["pipeline"],
            entity=row["entity"],
            id=row["id"],
            from_state=row["from_state"],
            to_state=row["to_state"],
            status=row["status"],
            reason=row["reason"],
            actor=row["actor"],
            at=row["at"],
            data=json.loads(data) if data else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "pipeline": self.pipeline,
            "entity": self.entity,
            "id": self.id,
            "from": self.from_state,
            "to": self.to_state,
            "status": self.status,
            "reason": self.reason,
            "actor": self.actor,
            "at": iso(self.at),
            "data": self.data or {},
        }


@dataclass(frozen=True, slots=True)
class Lease:
    """The right to report for one attempt of a context; `epoch` fences older attempts."""

    pipeline: str
    context: str
    orchestrator: str
    epoch: int
    expires_at: float
    aborting: bool = False  # the PSM asks the executor to stop the context
    deadline: float | None = None  # when the stage's time is up (its timeout, from the claim)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "context": self.context,
            "orchestrator": self.orchestrator,
            "epoch": self.epoch,
            "expires_at": self.expires_at,
            "aborting": self.aborting,
            "deadline": self.deadline,
        }


@dataclass(frozen=True, slots=True)
class WorkOrder:
    """What a claim hands its executor: everything it needs to start the context."""

    lease: Lease
    context: Context  # the model: its properties and steps
    checkout: Checkout | None = None  # the commit its workspace starts from, if any
    variables: dict[str, str] = field(default_factory=dict)  # `run_variables`, for steps
    # A fork's pull request: no passthrough variables, never unsandboxed.
    untrusted: bool = False
    # The values of the credentials its stage asked for (only to the lease's holder),
    # or why it gets none: it then ends Error before any step runs.
    credentials: dict[str, str] = field(default_factory=dict)
    denied: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The lease's fields, with the context's model and the checkout beside them."""
        return {
            **self.lease.to_dict(),
            "model": self.context.model_dump(mode="json"),
            "checkout": self.checkout.model_dump() if self.checkout else None,
            "variables": self.variables,
            "untrusted": self.untrusted,
            "credentials": self.credentials,
            "denied": self.denied,
        }


@dataclass(frozen=True, slots=True)
class Grant:
    """What a claimed context receives of the credential store (`otto.credentials`):
    values by name, or why it receives none (`credential_denied: …`)."""

    values: dict[str, str] = field(default_factory=dict)
    denied: str | None = None

    def record(self) -> dict[str, Any]:
        """What its claim's transition says of it: the names granted, never a value."""
        return {"credentials": sorted(self.values)} if self.values else {}


NO_GRANT = Grant()
CREDENTIAL_DENIED = "credential_denied"


class CredentialSource(Protocol):
    """What a claim asks of the credential store (`otto.credentials.Credentials`)."""

    def grant(self, tx: Any, project: str | None, names: Sequence[str], untrusted: bool) -> Grant:
        """The values of `names` for a context of `project`'s run, or why none."""
        ...


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# The project's first default branch, kept with a run's trigger details for its steps
# (`OTTO_DEFAULT_BRANCH`) but not shown among them.
DEFAULT_BRANCH_DETAIL = "default_branch"


def trigger_details(run: Mapping[str, Any]) -> dict[str, Any]:
    """A pipeline row's `trigger_data`, decoded (`About.details`; {} when none)."""
    text = run["trigger_data"]
    details = json.loads(text) if text else {}
    return details if isinstance(details, dict) else {}


def run_variables(run: Mapping[str, Any]) -> dict[str, str]:
    """What a run's steps are told of it, from its pipeline row (project, event, ref, sha,
    trigger_data): OTTO_EVENT, OTTO_PROJECT, OTTO_SHA, OTTO_BRANCH (a pull request's
    source branch), OTTO_TAG, OTTO_PR where known, then the trigger's own `env`."""
    details = trigger_details(run)
    found = {
        "OTTO_EVENT": run["event"],
        "OTTO_PROJECT": run["project"],
        "OTTO_SHA": run["sha"],
        "OTTO_BRANCH": _branch(run["ref"], details),
        "OTTO_TAG": _tag(run["ref"], details),
        "OTTO_PR": details.get("number"),
        "OTTO_DEFAULT_BRANCH": details.get(DEFAULT_BRANCH_DETAIL),
    }
    variables = {k: str(v) for k, v in found.items() if v not in (None, "")}
    return variables | _given_environment(details)


def gate_trigger(
    ref: str | None, event: str | None, project: str | None, details: Mapping[str, Any]
) -> Trigger:
    """What a run's gate conditions read of its trigger (`branch`, `tag`, `event`,
    `project`, `pull_request.fork`, `env.NAME`): the same values its steps are told."""
    return Trigger(
        branch=_branch(ref, details) or "",
        tag=_tag(ref, details) or "",
        event=event or "",
        project=project or "",
        fork=details.get("fork") is True,
        environment=_given_environment(details),
    )


def _branch(ref: str | None, details: Mapping[str, Any]) -> str | None:
    return details.get("source_branch") or _under(ref or "", "refs/heads/")


def _tag(ref: str | None, details: Mapping[str, Any]) -> str | None:
    return details.get("tag") or _under(ref or "", "refs/tags/")


def _given_environment(details: Mapping[str, Any]) -> dict[str, str]:
    """The trigger's own `env` (validated where it was given; a bad name is skipped)."""
    given = details.get("env")
    if not isinstance(given, dict):
        return {}
    return {k: str(v) for k, v in given.items() if ENV_NAME.match(str(k))}


def _under(ref: str, prefix: str) -> str | None:
    return ref[len(prefix) :] if ref.startswith(prefix) else None
