"""What the retention policy lets go, and freeing it: `otto gc` and the janitor share it.

A `Housekeeper` plans (`plan`: every completed run past its project's `retention_days`,
or beyond its `keep_runs` newest, with its objects and their bytes; every workspace of a
completed run past its grace; every cache beyond its project's `cache_limit_mb`, least
recently used first: `otto.housekeeping.caches`) and frees a plan (`free`). Only runs
that are `Complete` are touched, checked again right before their objects or workspaces
go (a retry may have started one since the plan); a run whose objects are gone keeps its
record, marked `logs_expired_at`. The `Janitor` thread frees a few runs at a time with a
pause between, off the state machine's path: it reads the database, deletes objects and
directories, and writes only that mark.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otto.housekeeping.caches import StaleCache, stale_caches
from otto.housekeeping.policy import Policy, Retention
from otto.housekeeping.workspaces import remove_tree, run_dirs, tree_bytes
from otto.objectstore import ObjectNotFound, ObjectStore
from otto.psm.store.base import Row, Store, Tx
from otto.serverlog import fields

log = logging.getLogger("otto.housekeeping")

COMPLETE = "Complete"
CHUNK = 500  # uuids per `IN (…)` query
DELETE_BATCH = 100  # objects deleted between two checks that the run is still complete
NO_LIMIT = 1 << 62


@dataclass(frozen=True)
class ExpiredRun:
    """A completed run whose logs and artifacts the policy lets go, and why."""

    pipeline: str
    project: str | None
    why: str  # "retention_days" or "keep_runs"
    keys: tuple[str, ...]
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "project": self.project,
            "why": self.why,
            "objects": len(self.keys),
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class StaleWorkspace:
    pipeline: str
    project: str | None
    path: Path
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "project": self.project,
            "path": str(self.path),
            "bytes": self.bytes,
        }


@dataclass
class Plan:
    runs: list[ExpiredRun] = field(default_factory=list)
    workspaces: list[StaleWorkspace] = field(default_factory=list)
    caches: list[StaleCache] = field(default_factory=list)

    @property
    def objects(self) -> int:
        return sum(len(r.keys) for r in self.runs) + len(self.caches)

    @property
    def bytes(self) -> int:
        kept = sum(r.bytes for r in self.runs) + sum(w.bytes for w in self.workspaces)
        return kept + sum(c.bytes for c in self.caches)

    def parts(self, runs: int) -> list[Plan]:
        """The plan in parts of at most `runs` runs each (workspaces, caches in the first)."""
        slices = [self.runs[i : i + runs] for i in range(0, len(self.runs), runs)] or [[]]
        return [
            Plan(part, *((self.workspaces, self.caches) if i == 0 else ([], [])))
            for i, part in enumerate(slices)
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": [r.to_json() for r in self.runs],
            "workspaces": [w.to_json() for w in self.workspaces],
            "caches": [c.to_json() for c in self.caches],
            "objects": self.objects,
            "bytes": self.bytes,
        }


class Housekeeper:
    """The retention policy applied to one server's state, objects and local workspaces.

    `defaults`: the server's retention settings; `overrides()`: each configured
    project's `retention:` block (None where it has none)."""

    def __init__(
        self,
        store: Store,
        objects: ObjectStore,
        workspace_roots: Sequence[Path],
        defaults: Retention,
        overrides: Callable[[], Mapping[str, Retention | None]],
    ) -> None:
        self.store, self.objects = store, objects
        self.workspace_roots = list(workspace_roots)
        self.defaults, self.overrides = defaults, overrides
        self._freeing = threading.Lock()  # the janitor and `otto gc` never free at once

    def _policies(self) -> Callable[[str | None], Policy]:
        """Each project's policy, as the project files say now, worked out once each."""
        overrides = self.overrides()
        return functools.cache(
            lambda project: Policy.of(self.defaults, overrides.get(project) if project else None)
        )

    # -- planning --------------------------------------------------------------
    def plan(self, runs_limit: int | None = None, now: float | None = None) -> Plan:
        """What the policy lets go now; at most `runs_limit` runs' objects."""
        now = time.time() if now is None else now
        expired = self._expired_runs(now)
        if runs_limit is not None:
            expired = expired[:runs_limit]
        runs = [self._with_objects(pipeline, project, why) for pipeline, project, why in expired]
        caches = stale_caches(self.objects, self._policies())
        return Plan(runs=runs, workspaces=self._stale_workspaces(now), caches=caches)

    def _expired_runs(self, now: float) -> list[tuple[str, str | None, str]]:
        """(pipeline, project, why) of every completed run whose objects may go, oldest
        first: past `retention_days`, then beyond `keep_runs`."""
        found: dict[str, tuple[str, str | None, str]] = {}
        policy = self._policies()
        # The earliest cutoff any project has: runs completed after it are kept by all.
        shortest = min(policy(p).logs_for for p in [None, *self.overrides()])
        for row in self.store.read(lambda tx: _completed_before(tx, now - shortest)):
            if row["updated_at"] < now - policy(row["project"]).logs_for:
                found[row["uuid"]] = (row["uuid"], row["project"], "retention_days")
        for project, keep in self._run_limits(policy):
            for row in self.store.read(lambda tx, p=project, k=keep: _beyond_newest(tx, p, k)):
                if row["state"] == COMPLETE and row["logs_expired_at"] is None:
                    found.setdefault(row["uuid"], (row["uuid"], project, "keep_runs"))
        return list(found.values())

    def _run_limits(self, policy: Callable[[str | None], Policy]) -> list[tuple[str, int]]:
        projects = set(self.overrides())
        if self.defaults.keep_runs:  # also for runs of projects no longer configured
            projects |= set(self.store.read(_projects_with_runs))
        limits = ((p, policy(p).keep_runs) for p in sorted(projects))
        return [(p, keep) for p, keep in limits if keep is not None]

    def _with_objects(self, pipeline: str, project: str | None, why: str) -> ExpiredRun:
        listed = self.objects.list(f"{pipeline}/")
        keys = tuple(info.key for info in listed)
        return ExpiredRun(pipeline, project, why, keys, sum(info.size for info in listed))

    def _stale_workspaces(self, now: float) -> list[StaleWorkspace]:
        dirs = {p: path for root in self.workspace_roots for p, path in run_dirs(root).items()}
        return [
            StaleWorkspace(
                row["uuid"], row["project"], dirs[row["uuid"]], tree_bytes(dirs[row["uuid"]])
            )
            for row in self._past_grace(list(dirs), now)
        ]

    def removable_workspaces(self, pipelines: list[str], now: float | None = None) -> list[str]:
        """Of these runs (a remote orchestrator's workspaces), those whose workspaces the
        policy lets go now: completed, and past their grace."""
        now = time.time() if now is None else now
        return [row["uuid"] for row in self._past_grace(pipelines, now)]

    def _past_grace(self, pipelines: list[str], now: float) -> list[Row]:
        """The rows of those runs that are complete and whose workspaces' time is up."""
        policy = self._policies()
        return [
            row
            for row in self._complete_rows(pipelines)
            if row["updated_at"] < now - policy(row["project"]).workspace_for(row["status"])
        ]

    def _complete_rows(self, pipelines: list[str]) -> list[Row]:
        rows: list[Row] = []
        for start in range(0, len(pipelines), CHUNK):
            chunk = pipelines[start : start + CHUNK]
            rows += self.store.read(lambda tx, c=chunk: _rows_of(tx, c))
        return [r for r in rows if r["state"] == COMPLETE]

    # -- freeing -----------------------------------------------------------------
    def free(self, plan: Plan) -> Plan:
        """Remove what `plan` lists, run by run, each still complete; what was freed."""
        freed = Plan()
        with self._freeing:
            for workspace in plan.workspaces:
                if self._still_complete(workspace.pipeline):
                    remove_tree(workspace.path)
                    freed.workspaces.append(workspace)
            for run in plan.runs:
                if self._free_run(run):
                    freed.runs.append(run)
            for cache in plan.caches:
                self._delete(cache.keys)
                freed.caches.append(cache)
        if freed.runs or freed.workspaces or freed.caches:
            said = fields(
                runs=len(freed.runs),
                caches=len(freed.caches),
                objects=freed.objects,
                workspaces=len(freed.workspaces),
                bytes=freed.bytes,
            )
            log.info("retention: freed", extra=said)
        return freed

    def _free_run(self, run: ExpiredRun) -> bool:
        for start in range(0, len(run.keys), DELETE_BATCH):
            if not self._still_complete(run.pipeline):
                return False
            self._delete(run.keys[start : start + DELETE_BATCH])
        marked = self.store.write(lambda tx: _mark_expired(tx, run.pipeline, time.time()))
        return bool(marked)

    def _delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self.objects.delete(key)
            except ObjectNotFound:
                continue  # gone already (`otto gc` and the janitor, or a retry's rewrite)

    def _still_complete(self, pipeline: str) -> bool:
        return bool(self._complete_rows([pipeline]))

    # -- disk use ----------------------------------------------------------------
    def disk_use(self, project: str) -> dict[str, Any]:
        """A project's runs, the bytes of their objects, and of their local workspaces."""
        runs = self.store.read(lambda tx: _runs_of_project(tx, project))
        kept = [r["uuid"] for r in runs if r["logs_expired_at"] is None]
        objects = [info for uuid in kept for info in self.objects.list(f"{uuid}/")]
        mine = {r["uuid"] for r in runs}
        dirs = [path for root in self.workspace_roots for p, path in run_dirs(root).items()]
        workspaces = [path for path in dirs if path.name in mine]
        return {
            "runs": len(runs),
            "runs_with_logs": len(kept),
            "objects": len(objects),
            "object_bytes": sum(info.size for info in objects),
            "workspaces": len(workspaces),
            "workspace_bytes": sum(tree_bytes(path) for path in workspaces),
        }


def _completed_before(tx: Tx, cutoff: float) -> list[Row]:
    return tx.all(
        "SELECT uuid, project, updated_at FROM pipelines WHERE state = ? AND updated_at < ?"
        " AND logs_expired_at IS NULL ORDER BY updated_at, uuid",
        COMPLETE,
        cutoff,
    )


def _beyond_newest(tx: Tx, project: str, keep: int) -> list[Row]:
    return tx.all(
        "SELECT uuid, state, logs_expired_at FROM pipelines WHERE project = ?"
        " ORDER BY created_at DESC, uuid DESC LIMIT ? OFFSET ?",
        project,
        NO_LIMIT,
        keep,
    )


def _projects_with_runs(tx: Tx) -> list[str]:
    rows = tx.all("SELECT DISTINCT project FROM pipelines WHERE project IS NOT NULL")
    return [r["project"] for r in rows]


def _rows_of(tx: Tx, pipelines: list[str]) -> list[Row]:
    marks = ", ".join("?" for _ in pipelines)
    return tx.all(
        f"SELECT uuid, project, state, status, updated_at FROM pipelines WHERE uuid IN ({marks})",
        *pipelines,
    )


def _runs_of_project(tx: Tx, project: str) -> list[Row]:
    return tx.all("SELECT uuid, logs_expired_at FROM pipelines WHERE project = ?", project)


def _mark_expired(tx: Tx, pipeline: str, now: float) -> int:
    return tx.run(
        "UPDATE pipelines SET logs_expired_at = ? WHERE uuid = ? AND state = ?"
        " AND logs_expired_at IS NULL",
        now,
        pipeline,
        COMPLETE,
    )


class Janitor(threading.Thread):
    """Frees what the policy lets go: each round plans up to `round_runs` runs and frees
    them in small steps (`step_runs` runs' objects each; the stale workspaces first),
    `pause` seconds apart; the next round follows at once while there is work, `idle`
    seconds later when there was none."""

    def __init__(
        self,
        keeper: Housekeeper,
        round_runs: int = 500,
        step_runs: int = 20,
        pause: float = 0.1,
        idle: float = 30.0,
    ) -> None:
        super().__init__(name="janitor", daemon=True)
        self.keeper, self.round_runs, self.step_runs = keeper, round_runs, step_runs
        self.pause, self.idle = pause, idle
        self.stopping = threading.Event()

    def sweep(self) -> bool:
        """One round; whether it freed anything. Replicas sharing a database sweep in turn
        (`Store.exclusive`): while another sweeps, this one frees nothing this round."""
        freed_any = False
        with self.keeper.store.exclusive("janitor") as mine:
            if not mine:
                return False
            for part in self.keeper.plan(runs_limit=self.round_runs).parts(self.step_runs):
                freed = self.keeper.free(part)
                freed_any = freed_any or bool(freed.runs or freed.workspaces or freed.caches)
                if self.stopping.wait(self.pause):
                    break
        return freed_any

    def run(self) -> None:
        wait = 0.0
        while not self.stopping.wait(wait):
            try:
                freed = self.sweep()
            except Exception:  # the store away, a directory refused: the next round retries
                log.exception("the janitor's round failed")
                freed = False
            wait = 0.0 if freed else self.idle

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(10)
