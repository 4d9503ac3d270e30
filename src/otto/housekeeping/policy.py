"""The retention policy: the server's defaults (`otto.config`), a project's overrides.

A project file may hold `retention: {retention_days, keep_runs, workspace_grace,
keep_failed_workspaces, cache_limit_mb}`; a key it leaves out takes the server's setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

DAY, HOUR, MINUTE = 86400.0, 3600.0, 60.0
MB = 1_000_000


class Retention(BaseModel):
    """A project's `retention:` block: every key optional (None: the server's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retention_days: float | None = Field(None, gt=0)
    keep_runs: int | None = Field(None, ge=0)  # 0: no limit
    workspace_grace: float | None = Field(None, ge=0)  # minutes
    keep_failed_workspaces: float | None = Field(None, ge=0)  # hours
    cache_limit_mb: float | None = Field(None, ge=0)  # its caches' size; 0: no limit


@dataclass(frozen=True)
class Policy:
    """What may be removed, in seconds after a run completed (and a count of runs)."""

    logs_for: float  # a completed run's logs and artifacts
    keep_runs: int | None  # the newest runs of a project whose objects are kept
    success_workspace_for: float  # a successful run's workspaces
    other_workspace_for: float  # a failed, unstable, aborted or errored run's
    cache_bytes: int | None = None  # the project's caches, least recently used go past it

    @classmethod
    def of(cls, defaults: Retention, override: Retention | None = None) -> Policy:
        """The policy of a project: its overrides over the server's `defaults`."""
        given = override.model_dump(exclude_none=True) if override else {}
        merged = defaults.model_copy(update=given)
        assert merged.retention_days is not None and merged.workspace_grace is not None
        assert merged.keep_failed_workspaces is not None
        return cls(
            logs_for=merged.retention_days * DAY,
            keep_runs=merged.keep_runs or None,
            success_workspace_for=merged.workspace_grace * MINUTE,
            other_workspace_for=merged.keep_failed_workspaces * HOUR,
            cache_bytes=int(merged.cache_limit_mb * MB) if merged.cache_limit_mb else None,
        )

    def workspace_for(self, status: str | None) -> float:
        return self.success_workspace_for if status == "Success" else self.other_workspace_for
