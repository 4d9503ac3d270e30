"""Where Otto keeps its state and how it listens: defaults, a YAML file, environment, flags.

Precedence, lowest first: the defaults (the embedded mode: everything under
`$OTTO_HOME`, default `./.otto`), the YAML file (`--config FILE`, else
`$OTTO_CONFIG`, else `$OTTO_HOME/otto.yml` when it exists), environment
variables (`OTTO_<SETTING>`, e.g. `OTTO_PORT=8080`), command-line flags.
Every setting is a field of `Settings`; a bad value names its source.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from otto.duration import parse_duration
from otto.isolation.policy import IsolationPolicy, names
from otto.serverlog import LogFormat, LogLevel
from otto.validation import did_you_mean, first_mistake

DEFAULT_PORT = 7670


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it may well be reachable


class ConfigError(ValueError):
    """A setting that cannot be used; the message says where it came from."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Path(".otto")
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    db: str = ""  # a SQLite path or a postgresql:// URL; default $OTTO_HOME/otto.db
    objects: str = ""  # an object-store URL; default $OTTO_HOME/objects
    lease_seconds: float = Field(30.0, gt=0)
    local_orchestrator: bool = True  # run contexts in this server too (off: remote ones only)
    concurrency: int = Field(0, ge=0)  # contexts run at once locally; 0: 2 × cores
    auction_window: float = Field(0.05, ge=0)  # seconds an auction waits for bids
    shutdown_grace: float = Field(30.0, ge=0)  # seconds running contexts get on SIGTERM
    token: str = ""  # API token; required to listen on anything but loopback (otto.auth)
    local_labels: str = ""  # labels the local orchestrator offers, e.g. 'docker, large'
    orchestrator_grace: float = Field(10.0, ge=0)  # a remote one's time to reconnect
    public_url: str = ""  # how others reach this server (commit-status links); default host:port
    # Isolation (otto.isolation): how the local orchestrator runs each context's steps.
    sandbox: Literal["bubblewrap", "none"] = "bubblewrap"  # none: unsandboxed, by name only
    sandbox_network: bool = True  # steps may reach the network (builds download things)
    sandbox_binds: str = ""  # trusted paths mounted read-write in every sandbox (comma-separated)
    containers: Literal["auto", "podman", "docker", "off"] = "auto"  # engine for `image = …`
    container_runtime: str = ""  # podman's OCI runtime (e.g. runc); empty: podman's default
    container_args: str = ""  # more `run` arguments, e.g. '--ulimit nofile=1024:1024'
    agent_env_passthrough: str = ""  # variables of the server's passed to every step (comma-sep.)
    max_connections: int = Field(0, ge=0)  # open at once; 0: 4096, or fewer as descriptors allow
    header_timeout: float = Field(10.0, gt=0)  # seconds a connection has to send a request head
    body_timeout: float = Field(30.0, gt=0)  # seconds a request body may pause
    read_token_required: bool = False  # reads (pages, API, logs, events) need a token too
    read_token: str = ""  # a second token that authorises reads only (otto.auth)
    allowed_hosts: str = ""  # more Host names the server answers to (comma-separated; '*': any)
    allowed_origins: str = ""  # more origins whose browser requests may act (comma-separated)
    max_log_bytes: int = Field(1 << 30, ge=1)  # a step log's limit: cut, step Failed log_limit
    # Seconds a stage without a `timeout` may run (`1h`, `90m`, `3600`: otto.duration).
    default_stage_timeout: float = Field(3600.0, gt=0)
    log_level: LogLevel = "info"  # what the server's log says: debug, info, warning, error
    log_format: LogFormat = "text"  # the server's log: readable text, or one JSON object a line
    # Retention (otto.housekeeping), each overridable by a project's `retention:` block.
    retention_days: float = Field(30.0, gt=0)  # a completed run's logs and artifacts kept
    keep_runs: int = Field(0, ge=0)  # runs per project whose objects are kept; 0: no limit
    workspace_grace: float = Field(5.0, ge=0)  # minutes a successful run's workspace stays
    keep_failed_workspaces: float = Field(24.0, ge=0)  # hours any other run's workspace stays
    cache_limit_mb: float = Field(2048.0, ge=0)  # a project's caches, LRU past it; 0: no limit
    janitor_interval: float = Field(30.0, gt=0)  # seconds between sweeps with nothing to free

    @field_validator("default_stage_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("sandbox_binds")
    @classmethod
    def _absolute_paths(cls, value: str) -> str:
        relative = [p for p in names(value) if not os.path.isabs(p)]
        if relative:
            raise ValueError(f"want absolute paths (comma-separated), not {', '.join(relative)}")
        return value

    @property
    def db_url(self) -> str:
        return self.db or str(self.home / "otto.db")

    @property
    def objects_url(self) -> str:
        return self.objects or str(self.home / "objects")

    @property
    def workspaces(self) -> Path:
        return self.home / "workspaces"

    def isolation(self) -> IsolationPolicy:
        """How the local orchestrator isolates steps, checked against this machine."""
        return IsolationPolicy.detect(
            sandbox=self.sandbox,
            network=self.sandbox_network,
            binds=self.sandbox_binds,
            hidden=[
                str(self.home),
                *(str(Path(p).absolute()) for p in (self.db, self.objects) if p and "://" not in p),
            ],
            containers=self.containers,
            container_runtime=self.container_runtime,
            container_args=self.container_args,
            passthrough=self.agent_env_passthrough,
        ).withholding(["OTTO_DB", "OTTO_OBJECTS"])  # URLs that may hold credentials

    @property
    def local_capacity(self) -> int:
        return self.concurrency or 2 * (os.cpu_count() or 1)


def load_settings(
    config: str | None = None, env: Mapping[str, str] | None = None, **flags: Any
) -> Settings:
    """Settings from every source; `flags` that are None are not given."""
    env = os.environ if env is None else env
    from_env = {
        name: env[f"OTTO_{name.upper()}"]
        for name in Settings.model_fields
        if f"OTTO_{name.upper()}" in env
    }
    home = Path(flags.get("home") or from_env.get("home") or Settings().home)
    path = config or env.get("OTTO_CONFIG")
    file = Path(path) if path else home / "otto.yml"
    from_file = _read_yaml(file, required=bool(path))
    values: dict[str, Any] = {}
    for source, given in ((str(file), from_file), ("environment", from_env)):
        for name, value in given.items():
            _validate_one(name, value, source)
            values[name] = value
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(first_mistake(exc, Settings).message) from None
    if not settings.token and not is_loopback(settings.host):
        raise ConfigError(
            f"refusing to listen on {settings.host} without an API token: set OTTO_TOKEN "
            "(or `token:` in the config file), or listen on 127.0.0.1"
        )
    if settings.read_token_required and not settings.token:
        raise ConfigError(
            "read_token_required needs an API token: set OTTO_TOKEN (or `token:` in the "
            "config file); `read_token` may add a read-only one"
        )
    if settings.read_token and not settings.read_token_required:
        raise ConfigError("read_token only counts with read_token_required: true")
    if settings.read_token and settings.read_token == settings.token:
        raise ConfigError("read_token must differ from token")
    return settings.model_copy(update={"home": settings.home.absolute()})


def _read_yaml(path: Path, required: bool) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise ConfigError(f"{path}: no such config file")
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings")
    return data


def _validate_one(name: str, value: Any, source: str) -> None:
    if name not in Settings.model_fields:
        known = list(Settings.model_fields)
        suggestion = did_you_mean(name, known) or f" (known: {', '.join(known)})"
        raise ConfigError(f"{source}: unknown setting {name!r}{suggestion}")
    try:
        Settings.model_validate({name: value})
    except ValidationError as exc:
        message = first_mistake(exc, Settings).message.removeprefix(f"{name}: ")
        where = f"OTTO_{name.upper()}" if source == "environment" else f"{source}: {name}"
        raise ConfigError(f"{where}: {message}") from None
