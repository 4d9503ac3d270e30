"""What the PSM hands out and records: transitions, their causes, leases, work orders."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Transition:
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

    def to_dict(self) -> dict[str, Any]:
        """The lease's fields, with the context's model and the checkout beside them."""
        return {
            **self.lease.to_dict(),
            "model": self.context.model_dump(mode="json"),
            "checkout": self.checkout.model_dump() if self.checkout else None,
        }
