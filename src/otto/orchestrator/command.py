"""`otto orchestrator`: check the command line, set up logging and signals, run.

Exit codes: 0 after SIGTERM/SIGINT, 64 a usage error (a bad option, a name
already taken), 77 the server refused the token, 130 a second interrupt.
"""

from __future__ import annotations

import logging
import math
import os
import re
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

from otto.auction.requirements import labels_of
from otto.config import ConfigError, Settings, load_settings
from otto.orchestrator.remote_orchestrator import EX_USAGE, RemoteOrchestrator, RemoteSettings

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")


class QuietFormatter(logging.Formatter):
    """One line per record: an exception's message, not its traceback (unless verbose)."""

    def __init__(self, fmt: str, verbose: bool) -> None:
        super().__init__(fmt)
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and not self.verbose:
            exc = record.exc_info[1]
            record = logging.makeLogRecord(record.__dict__)
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = record.exc_text = None
        return super().format(record)


def default_name() -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip("-._")[:64]
    return name or "orchestrator"


def problems(server: str, name: str, labels: str, capacity: int, cost_factor: float) -> list[str]:
    found = []
    for url in server.split(","):
        if not re.match(r"^https?://[^/\s,]+", url.strip()):
            found.append(f"--server: want an http(s) URL like http://ci.example:7670, not {url!r}")
    if not NAME.match(name):
        found.append(f"--name: letters, digits, '.', '_', '-' (at most 64), not {name!r}")
    bad = [label for label in labels_of(labels) if not LABEL.match(label)]
    if bad:
        found.append(f"--labels: not a label: {', '.join(sorted(bad))}")
    if capacity < 1:
        found.append("--capacity: at least 1")
    if not (math.isfinite(cost_factor) and cost_factor >= 0):
        found.append("--cost-factor: a number ≥ 0")
    return found


# --runtime → the settings it stands for (otto.config: sandbox, containers).
RUNTIMES = {
    "podman": {"containers": "podman"},
    "docker": {"containers": "docker"},
    "sandbox": {"sandbox": "bubblewrap", "containers": "off"},
    "none": {"sandbox": "none", "containers": "off"},
}


def _settings(runtime: str | None) -> Settings:
    """The settings of $OTTO_HOME/otto.yml and OTTO_* (isolation, `max_log_bytes`), as
    --runtime narrows them."""
    return load_settings().model_copy(update=RUNTIMES.get(runtime or "", {}))


def orchestrator_main(
    server: str,
    token: str | None,
    name: str | None,
    labels: str | None,
    capacity: int | None,
    cost_factor: float,
    workspace: str | None,
    grace: float,
    verbose: bool = False,
    runtime: str | None = None,
) -> int:
    name = name or default_name()
    capacity = 2 * (os.cpu_count() or 1) if capacity is None else capacity
    found = problems(server, name, labels or "", capacity, cost_factor)
    if grace < 0:
        found.append("--grace: seconds ≥ 0")
    if runtime is not None and runtime not in RUNTIMES:
        found.append(f"--runtime: one of {', '.join(RUNTIMES)}, not {runtime!r}")
    for problem in found:
        sys.stderr.write(f"otto orchestrator: {problem}\n")
    if found:
        return EX_USAGE
    os.environ.pop("OTTO_TOKEN", None)  # the steps this runs must not inherit it
    try:
        settings = _settings(runtime)
        isolation = settings.isolation()
    except ConfigError as exc:
        sys.stderr.write(f"otto orchestrator: {exc}\n")
        return EX_USAGE
    home = Path(os.environ.get("OTTO_HOME") or ".otto")
    root = Path(workspace) if workspace else home / "orchestrators" / name
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(QuietFormatter(f"otto orchestrator {name}: %(message)s", verbose))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        root.mkdir(parents=True, exist_ok=True)
        remote = RemoteOrchestrator(
            RemoteSettings(
                server=server,
                name=name,
                workspace=root.absolute(),
                token=token or None,
                labels=labels,
                capacity=capacity,
                cost_factor=cost_factor,
                grace=grace,
                isolation=isolation,
                max_log_bytes=settings.max_log_bytes,
                sweep_interval=settings.janitor_interval,
            )
        )
    except OSError as exc:
        sys.stderr.write(f"otto orchestrator: --workspace {root}: {exc.strerror or exc}\n")
        return EX_USAGE

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if remote.stopping.is_set():
            raise KeyboardInterrupt  # a second one: stop waiting for running contexts
        remote.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    return remote.run()
