"""Housekeeping: the retention policy, the janitor, `otto gc`, disk use, badges.

Where each sweep runs (docs/architecture.md):

- logs and artifacts of completed runs past `retention_days`, or beyond a project's
  `keep_runs` newest runs, leave the object store (the run record stays, marked
  `logs_expired`): the server's `Janitor`, in small steps, and `POST /v1/gc`
  (`otto gc`), the same `Housekeeper`;
- a completed run's workspaces (`workspace_grace` minutes after a success,
  `keep_failed_workspaces` hours after anything else): the server's janitor for its
  own orchestrator's workspace root; a remote orchestrator for its own, asking the
  server which of its runs may go (`POST /v1/gc/workspaces`, `WorkspaceSweeper`);
- control and private directories left by killed agents: each orchestrator at start
  (`otto.agent.workspace.remove_leftovers`).
"""

from otto.housekeeping.janitor import Housekeeper, Janitor, Plan
from otto.housekeeping.policy import Policy, Retention
from otto.housekeeping.routes import HousekeepingApi
from otto.housekeeping.workspaces import WorkspaceSweeper

__all__ = [
    "Housekeeper",
    "HousekeepingApi",
    "Janitor",
    "Plan",
    "Policy",
    "Retention",
    "WorkspaceSweeper",
]
