"""Orchestrators: bid for contexts, provision workspaces, run agents.

Entry point: `Orchestrator(executor, bids, objects_url, workspace_root, ...)`,
in `otto server` (the local orchestrator) or on its own machine.
"""

from otto.orchestrator.orchestrator import Executor, Orchestrator
from otto.orchestrator.pool import AgentPool, AgentProcess

__all__ = ["AgentPool", "AgentProcess", "Executor", "Orchestrator"]
