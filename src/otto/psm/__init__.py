"""The Pipeline State Machine (DESIGN §4): stored models, every state, the transition log.

Entry point: `PipelineStateMachine(open_store(url))`.
"""

from otto.psm.machine import Created, PipelineStateMachine
from otto.psm.records import (
    About,
    Conflict,
    IllegalTransition,
    Lease,
    NotFound,
    StaleLease,
    Transition,
)
from otto.psm.store import open_store

__all__ = [
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
