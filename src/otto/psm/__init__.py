"""The Pipeline State Machine: stored models, every state, the transition log.

Entry point: `PipelineStateMachine(open_store(url))`. Which module holds which rule (the
transition table, batch flow, leases): docs/architecture.md.
"""

from otto.psm.errors import Conflict, IllegalTransition, NotFound, StaleLease
from otto.psm.machine import CONFIG_ERROR, Created, PipelineStateMachine
from otto.psm.records import EVENTS, About, Lease, Transition
from otto.psm.store import open_store

__all__ = [
    "CONFIG_ERROR",
    "EVENTS",
    "About",
    "Conflict",
    "Created",
    "IllegalTransition",
    "Lease",
    "NotFound",
    "PipelineStateMachine",
    "StaleLease",
    "Transition",
    "open_store",
]
