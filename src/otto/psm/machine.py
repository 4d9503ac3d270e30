"""The Pipeline State Machine: the public face of `otto.psm`.

A small facade over one module per role: `pipelines` (create, abort, retry, reads),
`executor` (claim, renew, step and context reports, hand-back, lease and deadline
expiry), `awards` (open contexts, award, release), `approvals` (answers to
approval gates) and `replay` (a run's states re-derived from its log, compared).
Every method that changes anything runs as one piece of work on the store's writer (one
transaction, group-committed); reads run on snapshots. The decisions are `otto.psm.rules`'.
"""

from __future__ import annotations

from otto.model import Pipeline
from otto.psm.approvals import Approvals
from otto.psm.awards import Awards
from otto.psm.events import EventHub
from otto.psm.executor import DEFAULT_LEASE_SECONDS, DEFAULT_STAGE_TIMEOUT, Execution
from otto.psm.pipelines import CONFIG_ERROR, Created, IdempotencyKeyReused, Pipelines
from otto.psm.replay import Replays
from otto.psm.rules import DEADLINE_GRACE
from otto.psm.store.base import Store

__all__ = [
    "CONFIG_ERROR",
    "DEADLINE_GRACE",
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_STAGE_TIMEOUT",
    "Created",
    "IdempotencyKeyReused",
    "PipelineStateMachine",
]


class PipelineStateMachine(Pipelines, Execution, Awards, Approvals, Replays):
    def __init__(
        self,
        store: Store,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        default_stage_timeout: float = DEFAULT_STAGE_TIMEOUT,
    ) -> None:
        self.store = store
        self.lease_seconds = lease_seconds
        self.default_stage_timeout = default_stage_timeout
        self.events = EventHub(store)
        self._models: dict[str, Pipeline] = {}
        store.on_commit = self.events.publish

    def close(self) -> None:
        self.store.close()
