"""Every state of every entity and the one table of allowed transitions.

The table is data: `ALLOWED[entity][from]` is the set of states `from` may
become. `Store`/`Engine` code changes state only through `check()`, and the
HTTP API serves `table()` at `GET /v1/transitions`.
"""

from __future__ import annotations

from enum import StrEnum

from otto.psm.errors import IllegalTransition
from otto.status import Status


class Entity(StrEnum):
    PIPELINE = "pipeline"
    BATCH = "batch"
    CONTEXT = "context"
    STEP = "step"


# Names shared by several entities.
PENDING = "Pending"
RUNNING = "Running"
COMPLETE = "Complete"
NOT_RUN = "NotRun"
ABORTING = "Aborting"

# Batch-only states, in the order a batch passes through them.
AUCTION_STARTED = "AuctionStarted"
AUCTION_COMPLETED = "AuctionCompleted"
PROVISIONING = "Provisioning"
EXECUTING = "Executing"

OUTCOMES = [s.value for s in Status]  # a context's or step's terminal outcome

_BATCH_LIVE = [AUCTION_STARTED, AUCTION_COMPLETED, PROVISIONING, EXECUTING]

ALLOWED: dict[Entity, dict[str, frozenset[str]]] = {
    Entity.PIPELINE: {
        PENDING: frozenset({RUNNING, COMPLETE}),
        RUNNING: frozenset({COMPLETE}),
        COMPLETE: frozenset(),
    },
    Entity.BATCH: {
        PENDING: frozenset({AUCTION_STARTED, NOT_RUN}),
        AUCTION_STARTED: frozenset({AUCTION_COMPLETED, COMPLETE}),
        AUCTION_COMPLETED: frozenset({PROVISIONING, COMPLETE}),
        PROVISIONING: frozenset({EXECUTING, COMPLETE}),
        EXECUTING: frozenset({COMPLETE}),
        COMPLETE: frozenset(),
        NOT_RUN: frozenset(),
    },
    Entity.CONTEXT: {
        # Pending → Error: provisioning failed before the context started.
        PENDING: frozenset({RUNNING, NOT_RUN, Status.ERROR.value}),
        RUNNING: frozenset({ABORTING, *OUTCOMES}),
        # An abort races the context's own end: whatever really happened is recorded.
        ABORTING: frozenset(OUTCOMES),
        **{outcome: frozenset() for outcome in OUTCOMES},
        NOT_RUN: frozenset(),
    },
    Entity.STEP: {
        PENDING: frozenset({RUNNING, NOT_RUN}),
        RUNNING: frozenset(OUTCOMES),
        **{outcome: frozenset() for outcome in OUTCOMES},
        NOT_RUN: frozenset(),
    },
}

TERMINAL: dict[Entity, frozenset[str]] = {
    entity: frozenset(s for s, nexts in table.items() if not nexts)
    for entity, table in ALLOWED.items()
}

# A retry (`POST /v1/pipelines/{uuid}/retry`) is the one way out of a terminal state:
# these moves are allowed only to a transition whose reason is RETRY.
RETRY = "retry"
RETRY_ALLOWED: dict[Entity, dict[str, frozenset[str]]] = {
    Entity.PIPELINE: {COMPLETE: frozenset({RUNNING})},
    Entity.BATCH: {COMPLETE: frozenset({PENDING}), NOT_RUN: frozenset({PENDING})},
    # Any outcome: `?all=true` runs successful contexts again too.
    Entity.CONTEXT: {state: frozenset({PENDING}) for state in (*OUTCOMES, NOT_RUN)},
    Entity.STEP: {state: frozenset({PENDING}) for state in (*OUTCOMES, NOT_RUN)},
}

# Batch states in which its contexts have been handed out (auction is over).
BATCH_AWARDED = frozenset({AUCTION_COMPLETED, PROVISIONING, EXECUTING})
BATCH_LIVE = frozenset(_BATCH_LIVE)


# A server that shuts down hands its unfinished contexts back, to run again after
# the restart: allowed only to a transition whose reason is HANDED_BACK.
HANDED_BACK = "handed_back"
HAND_BACK_ALLOWED: dict[Entity, dict[str, frozenset[str]]] = {
    Entity.PIPELINE: {},
    Entity.BATCH: {},
    Entity.CONTEXT: {RUNNING: frozenset({PENDING})},
    Entity.STEP: {state: frozenset({PENDING}) for state in (RUNNING, *OUTCOMES)},
}

# The moves only a given reason may make, beyond the table.
BY_REASON = {RETRY: RETRY_ALLOWED, HANDED_BACK: HAND_BACK_ALLOWED}


def check(entity: Entity, ident: str, current: str, wanted: str, reason: str | None = None) -> None:
    if wanted in ALLOWED[entity].get(current, frozenset()):
        return
    extra = BY_REASON.get(reason or "")
    if extra is not None and wanted in extra[entity].get(current, frozenset()):
        return
    raise IllegalTransition(entity, ident, current, wanted)


def is_terminal(entity: Entity, state: str) -> bool:
    return state in TERMINAL[entity]


def table(
    allowed: dict[Entity, dict[str, frozenset[str]]] = ALLOWED,
) -> dict[str, dict[str, list[str]]]:
    """A transition table as JSON-ready data, for the API."""
    return {
        entity.value: {state: sorted(nexts) for state, nexts in states.items()}
        for entity, states in allowed.items()
    }
