"""Every state of every entity and the one table of allowed transitions.

The table is data: `TRANSITIONS[entity][from][reason]` is the set of states `from`
may become (reason None: for any reason). State changes only through `check()` (in
`ledger.move`), and the HTTP API serves `table()` at `GET /v1/transitions`. `Reason`
names why the PSM itself moves something.
"""

from __future__ import annotations

from collections.abc import Iterable
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
SKIPPED = "Skipped"  # its condition was false, or the outcome its hook reacts to not met
WAITING = "Waiting"  # a context held at an approval gate (`input`), holding nothing

# Batch-only states, in the order a batch passes through them.
AUCTION_STARTED = "AuctionStarted"
AUCTION_COMPLETED = "AuctionCompleted"
PROVISIONING = "Provisioning"
EXECUTING = "Executing"

OUTCOMES = [s.value for s in Status]  # a context's or step's terminal outcome

_BATCH_LIVE = [AUCTION_STARTED, AUCTION_COMPLETED, PROVISIONING, EXECUTING]


class Reason(StrEnum):
    """Why the PSM itself moves something; each value is the string on the wire (the
    `reason` of a transition). Executors report reasons of their own (`exit code 2`,
    `provision_failed: …`), which stay free text."""

    CREATED = "created"
    CONFIG_ERROR = "config_error"  # a run refused at creation: its pipeline cannot run
    AWARDED = "awarded"
    CLAIMED = "claimed"
    USER_ABORT = "user_abort"
    SUPERSEDED = "superseded"  # aborted by a newer run of the same branch
    PR_CLOSED = "pr_closed"  # aborted: its pull request was closed or merged
    PREVIOUS_CONTEXT_FAILED = "previous_context_failed"  # Linear: an earlier context failed
    FANOUT_SIBLING_FAILED = "fanout_sibling_failed"
    PREVIOUS_BATCH_FAILED = "previous_batch_failed"
    AGENT_LOST = "agent_lost"  # its lease ran out
    TIMEOUT = "timeout"  # stopped at its stage's deadline
    RETRY = "retry"
    # A lost (`agent_lost`) or unprovisioned (`provision_failed`) attempt runs again, as
    # its stage's `retry_on` asks: Error → Pending, the cause in the transition's data.
    AUTO_RETRY = "auto_retry"
    CONDITION_FALSE = "condition_false"  # Skipped: its gate's condition did not hold
    HANDED_BACK = "handed_back"  # its executor shut down before it ended
    INPUT = "input"  # Waiting: held at its gate's input for a person's answer
    APPROVED = "approved"  # a person approved a Waiting context
    REJECTED = "rejected"  # Failed: a person rejected a Waiting context
    INPUT_TIMEOUT = "input_timeout"  # Aborted: nobody answered its gate's input in time
    NOT_TRIGGERED = "not_triggered"  # Skipped: a hook whose outcome did not come about


def _moves(
    always: Iterable[str] = (),
    retry: Iterable[str] = (),
    handed_back: Iterable[str] = (),
    auto_retry: Iterable[str] = (),
) -> dict[Reason | None, frozenset[str]]:
    """Where one state may go: always, or only by a transition of the given reason."""
    return {
        None: frozenset(always),
        Reason.RETRY: frozenset(retry),
        Reason.HANDED_BACK: frozenset(handed_back),
        Reason.AUTO_RETRY: frozenset(auto_retry),
    }


_RERUN = (*OUTCOMES, NOT_RUN, SKIPPED)  # a retry runs a context in any end state again

# The transition table: `TRANSITIONS[entity][from][reason]` is the set of states `from`
# may become, for any reason (None) or only for that one. A retry
# (`POST /v1/pipelines/{uuid}/retry`) is the one way out of a terminal state; a server
# that shuts down hands its unfinished contexts back, to run again after the restart.
TRANSITIONS: dict[Entity, dict[str, dict[Reason | None, frozenset[str]]]] = {
    Entity.PIPELINE: {
        PENDING: _moves({RUNNING, COMPLETE}),
        RUNNING: _moves({COMPLETE}),
        COMPLETE: _moves(retry={RUNNING}),
    },
    Entity.BATCH: {
        PENDING: _moves({AUCTION_STARTED, NOT_RUN}),
        AUCTION_STARTED: _moves({AUCTION_COMPLETED, COMPLETE}),
        AUCTION_COMPLETED: _moves({PROVISIONING, COMPLETE}),
        PROVISIONING: _moves({EXECUTING, COMPLETE}),
        EXECUTING: _moves({COMPLETE}),
        COMPLETE: _moves(retry={PENDING}),
        NOT_RUN: _moves(retry={PENDING}),
    },
    Entity.CONTEXT: {
        # Pending → Error: provisioning failed before the context started; Pending →
        # Skipped: its condition was false when its batch started; Pending → Waiting: held
        # at its enter gate's input.
        PENDING: _moves({RUNNING, NOT_RUN, SKIPPED, WAITING, Status.ERROR.value}),
        # Running → Waiting: its steps succeeded, it waits at its exit gate's input.
        RUNNING: _moves({ABORTING, WAITING, *OUTCOMES}, handed_back={PENDING}),
        # Waiting → Pending (approved at the enter gate), Success (at the exit gate),
        # Failed (rejected), Aborted (input_timeout, or the run or its batch stopped).
        WAITING: _moves({PENDING, Status.SUCCESS, Status.FAILED, Status.ABORTED}),
        # An abort races the context's own end: whatever really happened is recorded.
        ABORTING: _moves(OUTCOMES),
        **{state: _moves(retry={PENDING}) for state in _RERUN},
        # An automatic retry: a context that just ended Error runs again at once.
        Status.ERROR.value: _moves(retry={PENDING}, auto_retry={PENDING}),
    },
    Entity.STEP: {
        PENDING: _moves({RUNNING, NOT_RUN}),
        RUNNING: _moves(OUTCOMES, handed_back={PENDING}),
        **{
            outcome: _moves(retry={PENDING}, handed_back={PENDING}, auto_retry={PENDING})
            for outcome in OUTCOMES
        },
        NOT_RUN: _moves(retry={PENDING}),
    },
}


def _view(reason: Reason | None, every_state: bool) -> dict[Entity, dict[str, frozenset[str]]]:
    return {
        entity: {s: m[reason] for s, m in states.items() if every_state or m[reason]}
        for entity, states in TRANSITIONS.items()
    }


# The table's views, as served: the moves any transition may make, and those only a
# given reason may make beyond them.
ALLOWED = _view(None, every_state=True)
RETRY = Reason.RETRY
RETRY_ALLOWED = _view(Reason.RETRY, every_state=False)
HANDED_BACK = Reason.HANDED_BACK
HAND_BACK_ALLOWED = _view(Reason.HANDED_BACK, every_state=False)
AUTO_RETRY = Reason.AUTO_RETRY
AUTO_RETRY_ALLOWED = _view(Reason.AUTO_RETRY, every_state=False)
BY_REASON = {RETRY: RETRY_ALLOWED, HANDED_BACK: HAND_BACK_ALLOWED, AUTO_RETRY: AUTO_RETRY_ALLOWED}

TERMINAL: dict[Entity, frozenset[str]] = {
    entity: frozenset(s for s, nexts in table.items() if not nexts)
    for entity, table in ALLOWED.items()
}

# Batch states in which its contexts have been handed out (auction is over).
BATCH_AWARDED = frozenset({AUCTION_COMPLETED, PROVISIONING, EXECUTING})
BATCH_LIVE = frozenset(_BATCH_LIVE)


def check(entity: Entity, ident: str, current: str, wanted: str, reason: str | None = None) -> None:
    if wanted in ALLOWED[entity].get(current, frozenset()):
        return
    moves = TRANSITIONS[entity].get(current)
    if reason in BY_REASON and moves is not None and wanted in moves[Reason(reason)]:
        return
    raise IllegalTransition(entity, ident, current, wanted)


def table(
    allowed: dict[Entity, dict[str, frozenset[str]]] = ALLOWED,
) -> dict[str, dict[str, list[str]]]:
    """A transition table as JSON-ready data, for the API."""
    return {
        entity.value: {state: sorted(nexts) for state, nexts in states.items()}
        for entity, states in allowed.items()
    }
