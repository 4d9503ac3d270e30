"""What an orchestrator offers and how it isolates each context it runs.

Built once from the settings (`sandbox`, `sandbox_network`, `sandbox_binds`,
`containers`, `container_runtime`, `container_args`, `agent_env_passthrough`), after
checking what this machine can do: whether bubblewrap can make namespaces, which
container engine is installed. A context whose stage names an image runs in a
container; any other in the host sandbox; with `sandbox: none`, unsandboxed — only
when the operator said so by name, never as a silent fallback.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from otto.isolation import bubblewrap
from otto.isolation.container import OWNER_LABEL
from otto.isolation.spec import CPUS, IMAGE, MEMORY, ContainerSpec, SandboxSpec
from otto.model import Context

# Names of variables whose values are secrets: never given to a step, always masked.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|PRIVATE|API_?KEY|(^|_)KEY$", re.I)
ENGINES = ("podman", "docker")
MIN_SECRET = 6  # characters


def looks_secret(name: str) -> bool:
    return bool(SECRET_NAME.search(name))


def names(value: str | Iterable[str]) -> tuple[str, ...]:
    """`'A, B'` or `['A', 'B']` → `('A', 'B')`."""
    parts = value.split(",") if isinstance(value, str) else list(value)
    return tuple(p.strip() for p in parts if p.strip())


@dataclass(frozen=True)
class IsolationPolicy:
    sandbox: str = "bubblewrap"  # or "none"
    network: bool = True
    binds: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()  # never visible in a sandbox: $OTTO_HOME, the store, …
    engine: str | None = None  # the container CLI; None: this orchestrator runs no images
    engine_args: tuple[str, ...] = ()
    container_args: tuple[str, ...] = ()
    passthrough: tuple[str, ...] = ()
    # Variables holding secrets whatever their names say (a project's `secret_env`, …).
    withheld: frozenset[str] = frozenset()
    # Why the host sandbox cannot be made here (bubblewrap missing, no namespaces).
    sandbox_problem: str | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @classmethod
    def detect(
        cls,
        *,
        sandbox: str = "bubblewrap",
        network: bool = True,
        binds: str | Iterable[str] = (),
        hidden: Iterable[str] = (),
        containers: str = "auto",
        container_runtime: str = "",
        container_args: str = "",
        passthrough: str | Iterable[str] = (),
    ) -> IsolationPolicy:
        """The policy these settings ask for, on this machine."""
        engine = _engine(containers)
        runtime = ["--runtime", container_runtime] if container_runtime and engine else []
        return cls(
            sandbox=sandbox,
            network=network,
            binds=names(binds),
            hidden=tuple(str(h) for h in hidden),
            engine=engine,
            engine_args=tuple(runtime) if engine and "podman" in engine else (),
            container_args=tuple(shlex.split(container_args)),
            passthrough=names(passthrough),
            sandbox_problem=bubblewrap.unavailable() if sandbox == "bubblewrap" else None,
        )

    def withholding(self, variables: Iterable[str]) -> IsolationPolicy:
        """This policy, with more variables known to hold secrets."""
        return replace(self, withheld=self.withheld | frozenset(variables))

    def describe(self) -> str:
        host = "unsandboxed (sandbox: none)" if self.sandbox == "none" else self.sandbox
        if self.sandbox_problem:
            host = f"refused: {self.sandbox_problem}"
        return f"host contexts: {host}; images: {self.engine or 'not offered'}"

    def exposed(self) -> list[str]:
        """What `sandbox_binds` shows every step of what it must never see (a bind that
        holds $OTTO_HOME): said at start, as the operator's own choice."""
        return [
            f"sandbox_binds {bind} shows {hidden} to every step"
            for bind in self.binds
            for hidden in self.hidden
            if Path(hidden).is_relative_to(bind)
        ]

    def kind_for(self, container: bool) -> str:
        """How a context's steps run here: the container engine, `bubblewrap` or `none`."""
        if container and self.engine:
            return self.engine
        return "none" if self.sandbox == "none" else "bubblewrap"

    def refusal(self, context: Context, untrusted: bool = False) -> str | None:
        """Why this orchestrator cannot run `context` (None: it can). An `untrusted` one (a
        fork's pull request) never runs unsandboxed."""
        props = context.properties
        if untrusted and not props.get("image") and self.sandbox == "none":
            return (
                "untrusted_unsandboxed: a pull request from a fork never runs unsandboxed,"
                " and this orchestrator runs steps with `sandbox: none`"
            )
        if props.get("image"):
            if not self.engine:
                return "provision_failed: no container engine here"
            for name, pattern in (("image", IMAGE), ("cpus", CPUS), ("memory", MEMORY)):
                value = props.get(name)
                if value and not re.match(pattern, value):
                    return f"provision_failed: {name} {value!r} is not valid"
            return None
        return self.sandbox_refusal()

    def sandbox_refusal(self) -> str | None:
        """Why no step runs in the host sandbox here (None: they do)."""
        if self.sandbox_problem is None:
            return None
        return (
            f"sandbox_unavailable: {self.sandbox_problem}; the operator may set "
            "`sandbox: none` (OTTO_SANDBOX=none) to run steps unsandboxed"
        )

    def sandbox_spec(self) -> SandboxSpec:
        kind = "none" if self.sandbox == "none" else "bubblewrap"
        return SandboxSpec(
            kind=kind, network=self.network, binds=list(self.binds), hidden=list(self.hidden)
        )

    def container_spec(
        self, pipeline: str, context: Context, epoch: int, owner: str
    ) -> ContainerSpec | None:
        """The container of `context`'s attempt `epoch`; `owner` labels it as the
        orchestrator's (its workspace root), for `remove_stale` after a crash."""
        props = context.properties
        image = (props.get("image") or "").strip()
        if not image or self.engine is None:
            return None
        return ContainerSpec(
            engine=self.engine,
            image=image,
            name=f"otto-{context.uuid}-{epoch}",
            labels={
                "otto.pipeline": pipeline,
                "otto.context": context.uuid,
                OWNER_LABEL: owner,
            },
            engine_args=list(self.engine_args),
            run_args=list(self.container_args),
            cpus=props.get("cpus") or None,
            memory=props.get("memory") or None,
            network=self.network,
        )

    def passthrough_values(self) -> dict[str, str]:
        return {n: self.environ[n] for n in self.passthrough if n in self.environ}

    def agent_environ(self) -> dict[str, str]:
        """The environment agents start with: this process's, less its secrets (the API
        token, webhook and status secrets). The object store's own keys stay (AWS_*):
        the agent, outside every sandbox, needs them; no step is given them."""
        return {
            k: v for k, v in self.environ.items() if k.startswith("AWS_") or not self._secret(k)
        }

    def secret_values(self) -> list[str]:
        """Every secret value this process knows from its environment, to be masked. Not
        the short ones: `OTTO_READ_TOKEN_REQUIRED=1` is a setting, and masking every `1`
        in a log would garble it."""
        return [v for k, v in self.environ.items() if len(v) >= MIN_SECRET and self._secret(k)]

    def _secret(self, name: str) -> bool:
        return looks_secret(name) or name in self.withheld


def _engine(containers: str) -> str | None:
    if containers == "off":
        return None
    if containers in ENGINES:
        return containers
    return next((engine for engine in ENGINES if shutil.which(engine)), None)
