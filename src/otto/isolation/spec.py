"""How a context is to be isolated, as its agent's invocation says it (JSON)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# An image reference (`python:3.12`, `registry:5000/team/app@sha256:…`): never an option.
IMAGE = r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}$"
CPUS = r"^[0-9]{1,4}(\.[0-9]{1,3})?$"
MEMORY = r"^[0-9]{1,12}[bkmgBKMG]?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SandboxSpec(_Strict):
    """The host sandbox of every process a context runs on this machine."""

    kind: Literal["bubblewrap", "none"]
    network: bool = True  # builds download their dependencies; off per orchestrator
    binds: list[str] = Field(default_factory=list)  # operator's trusted read-write paths
    # Never visible, even where they lie under a directory the sandbox shows (e.g. an
    # $OTTO_HOME under /opt or /etc): the state, the objects, other workspaces.
    hidden: list[str] = Field(default_factory=list)


class ContainerSpec(_Strict):
    """The one container a context's steps run in."""

    engine: str = "podman"  # the CLI: podman, or docker where only Docker is present
    image: str = Field(pattern=IMAGE)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    labels: dict[str, str] = Field(default_factory=dict)
    engine_args: list[str] = Field(default_factory=list)  # before the verb: --runtime runc
    run_args: list[str] = Field(default_factory=list)  # to `run`: --ulimit nofile=1024:1024
    cpus: str | None = Field(None, pattern=CPUS)
    memory: str | None = Field(None, pattern=MEMORY)
    network: bool = True
