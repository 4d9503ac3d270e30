"""Where a context's step processes run: a host sandbox, a container, or (asked for by
name) nowhere special. One small interface, `Isolation`; one implementation per kind.

- `Bubblewrap` (the default for a context without an image): each step process runs
  under `bwrap` with new mount, PID, IPC and UTS namespaces; the system read-only; the
  workspace, the context's home and the control socket's directory read-write; a
  private `/tmp`; nothing else of the machine (`$OTTO_HOME`, the database, the object
  store, other workspaces, `/root`) visible at all.
- `Container` (a context with `image = '…'`): the orchestrator's agent provisions one
  Podman (or Docker) container per context, the same directories mounted at the same
  paths, runs each step process in it with `exec`, and removes it when the context ends.
- `Unsandboxed` (`sandbox: none`): the process runs as the agent does. Only on request.

The agent itself (logs, reports, the object store) always stays outside. What an
orchestrator offers and how each context is isolated is decided by `IsolationPolicy`
(`otto.isolation.policy`); the agent gets the result in its invocation as a
`SandboxSpec` and an optional `ContainerSpec` (`otto.isolation.spec`).
"""

from otto.isolation.base import Command, Isolation, Mounts, ProvisionError
from otto.isolation.bubblewrap import Bubblewrap
from otto.isolation.container import Container
from otto.isolation.spec import ContainerSpec, SandboxSpec
from otto.isolation.unsandboxed import Unsandboxed


def host_isolation(spec: SandboxSpec) -> Isolation:
    """How processes that run on this machine (not in a container) are isolated."""
    return Bubblewrap(spec) if spec.kind == "bubblewrap" else Unsandboxed()


__all__ = [
    "Bubblewrap",
    "Command",
    "Container",
    "ContainerSpec",
    "Isolation",
    "Mounts",
    "ProvisionError",
    "SandboxSpec",
    "Unsandboxed",
    "host_isolation",
]
