"""Caches past their project's size limit (`cache_limit_mb`), least recently used first.

Caches live at `caches/<project>/…` (`otto.steps.caches`); each restore touches the
archive's `.used` marker, so a cache was last used at the newer of the two's times. A
project keeps its most recently used caches while they fit in its limit; the rest go.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from otto.housekeeping.policy import Policy
from otto.objectstore import ObjectInfo, ObjectStore
from otto.objectstore.keys import cache_used_key

PREFIX = "caches/"


@dataclass(frozen=True)
class StaleCache:
    project: str
    key: str
    bytes: int
    last_used: datetime

    @property
    def keys(self) -> tuple[str, str]:
        """The archive and its `.used` marker."""
        return self.key, cache_used_key(self.key)

    def to_json(self) -> dict[str, Any]:
        return {
            "project": self.project,
            "key": self.key,
            "bytes": self.bytes,
            "last_used": self.last_used.isoformat(),
        }


def stale_caches(objects: ObjectStore, policy: Callable[[str | None], Policy]) -> list[StaleCache]:
    """Every project's caches beyond its limit, least recently used first."""
    listed = objects.list(PREFIX)
    used = {o.key: o.modified for o in listed if o.key.endswith(".used")}
    by_project: dict[str, list[ObjectInfo]] = defaultdict(list)
    for info in listed:
        if not info.key.endswith(".used"):
            by_project[info.key.split("/")[1]].append(info)
    stale: list[StaleCache] = []
    for project, archives in by_project.items():
        limit = policy(None if project == "_" else project).cache_bytes
        stale += _beyond(project, archives, used, limit)
    return sorted(stale, key=lambda c: c.last_used)


def _beyond(
    project: str, archives: list[ObjectInfo], used: dict[str, datetime], limit: int | None
) -> list[StaleCache]:
    def last_used(info: ObjectInfo) -> datetime:
        marker = used.get(cache_used_key(info.key))
        return max(info.modified, marker) if marker else info.modified

    kept = 0
    stale = []
    for info in sorted(archives, key=last_used, reverse=True):
        kept += info.size
        if limit is not None and kept > limit:
            stale.append(StaleCache(project, info.key, info.size, last_used(info)))
    return stale
