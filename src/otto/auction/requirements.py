"""What a context asks of an orchestrator, and what an orchestrator offers.

The vocabulary (stage properties, all optional):

- `runtime = 'linux'` — the operating system (`platform.system().lower()`);
- `arch = 'x86_64'` — the machine architecture (`platform.machine()`);
- `labels = 'gpu, large'` — every label must be one the orchestrator declares;
- `image = 'python:3.12'` (or `runtime { docker { image = … } }`) — a container of that
  image: only orchestrators that offer containers (`otto orchestrator --runtime podman`).

A context that asks for nothing can run anywhere. Anything else a stage says
(its `name`, say) is not a requirement.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from typing import Any


def labels_of(given: str | list[str] | frozenset[str] | None) -> frozenset[str]:
    """Labels from `'gpu, large'` or `['gpu', 'large']`: trimmed, empty ones dropped."""
    parts = (given or "").split(",") if isinstance(given, str) else list(given or [])
    return frozenset(part.strip() for part in parts if part.strip())


@dataclass(frozen=True)
class Requirements:
    runtime: str | None = None
    arch: str | None = None
    labels: frozenset[str] = frozenset()
    container: bool = False

    @classmethod
    def of(cls, properties: dict[str, str]) -> Requirements:
        return cls(
            runtime=(properties.get("runtime") or "").strip().lower() or None,
            arch=(properties.get("arch") or "").strip() or None,
            labels=labels_of(properties.get("labels")),
            container=bool((properties.get("image") or "").strip()),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Requirements:
        return cls(
            runtime=data.get("runtime") or None,
            arch=data.get("arch") or None,
            labels=labels_of(data.get("labels")),
            container=bool(data.get("container")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime,
            "arch": self.arch,
            "labels": sorted(self.labels),
            "container": self.container,
        }


@dataclass(frozen=True)
class Capabilities:
    os: str
    arch: str
    cores: int
    memory_mb: int
    labels: frozenset[str] = field(default_factory=frozenset)
    containers: bool = False  # runs contexts in images

    @classmethod
    def of_this_machine(cls, labels: str | None = None, containers: bool = False) -> Capabilities:
        pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 0
        page_size = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
        return cls(
            os=platform.system().lower(),
            arch=platform.machine(),
            cores=os.cpu_count() or 1,
            memory_mb=pages * page_size // (1024 * 1024),
            labels=labels_of(labels),
            containers=containers,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Capabilities:
        return cls(
            os=str(data.get("os", "")).lower(),
            arch=str(data.get("arch", "")),
            cores=int(data.get("cores", 1)),
            memory_mb=int(data.get("memory_mb", 0)),
            labels=labels_of(data.get("labels")),
            containers=bool(data.get("containers")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "os": self.os,
            "arch": self.arch,
            "cores": self.cores,
            "memory_mb": self.memory_mb,
            "labels": sorted(self.labels),
            "containers": self.containers,
        }

    def satisfy(self, needs: Requirements) -> bool:
        return (
            (needs.runtime is None or needs.runtime == self.os)
            and (needs.arch is None or needs.arch == self.arch)
            and needs.labels <= self.labels
            and (self.containers or not needs.container)
        )
