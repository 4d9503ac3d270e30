"""The agent: runs one context's steps in its own workspace.

Entry points: `run_agent(invocation, reporter) -> ContextResult` in-process,
and `agent_main(invocation_path) -> int` for `otto agent --invocation FILE`
(also `python -m otto.agent --invocation FILE`); its exit code is the
context's status (0 Success, 1 Failed, 2 Aborted, 3 Unstable, 4 Error).

Names are imported lazily, so `python -m otto.agent.control` (the control
socket's shell client) starts without loading the agent.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otto.agent.invocation import (
        Checkout,
        Invocation,
        InvocationError,
        JsonLinesReport,
        LibraryRef,
        load_invocation,
    )
    from otto.agent.main import agent_main
    from otto.agent.reporter import JsonLinesReporter, Reporter
    from otto.agent.runner import Agent, ContextResult, StepResult, run_agent

_EXPORTS = {
    "Agent": "otto.agent.runner",
    "Checkout": "otto.agent.invocation",
    "ContextResult": "otto.agent.runner",
    "Invocation": "otto.agent.invocation",
    "InvocationError": "otto.agent.invocation",
    "JsonLinesReport": "otto.agent.invocation",
    "JsonLinesReporter": "otto.agent.reporter",
    "LibraryRef": "otto.agent.invocation",
    "Reporter": "otto.agent.reporter",
    "StepResult": "otto.agent.runner",
    "agent_main": "otto.agent.main",
    "load_invocation": "otto.agent.invocation",
    "run_agent": "otto.agent.runner",
}
__all__ = [
    "Agent",
    "Checkout",
    "ContextResult",
    "Invocation",
    "InvocationError",
    "JsonLinesReport",
    "JsonLinesReporter",
    "LibraryRef",
    "Reporter",
    "StepResult",
    "agent_main",
    "load_invocation",
    "run_agent",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'otto.agent' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
