"""Run a real `otto server` process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from otto.client.errors import EX_UNAVAILABLE
from portkit import free_port

# For tests that follow a step's processes by the PIDs it writes down: in a sandbox those
# are numbers of its own PID namespace. What the sandbox does to a process tree is proven
# in tests/isolation.
UNSANDBOXED = {"OTTO_SANDBOX": "none"}


class PortTaken(RuntimeError):
    """The server could not listen (exit 69): its port was taken after `free_port` chose it,
    e.g. as the local end of a connection, by a test running in parallel."""


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    home: Path

    def client(self, token: str | None = None) -> httpx.Client:
        """A client of the server's API, sending `token` if given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, timeout=10, headers=headers)


def start_server(home: Path, port: int, db: str | None = None, **env: str) -> Server:
    args = [sys.executable, "-m", "otto.cli", "server", "--port", str(port), "--home", str(home)]
    if db:
        args += ["--db", db]
    log = open(home.parent / f"server-{port}.log", "ab")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        args, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
    )
    server = Server(f"http://127.0.0.1:{port}", process, home)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            if process.returncode == EX_UNAVAILABLE:
                raise PortTaken(f"otto server could not listen on port {port}")
            raise RuntimeError(f"otto server exited with {process.returncode}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("otto server did not come up within 20 s")


def stop_server(server: Server, sig: int = signal.SIGTERM) -> None:
    if server.process.poll() is None:
        server.process.send_signal(sig)
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@contextmanager
def running_server(home: Path, db: str | None = None, **env: str) -> Iterator[Server]:
    home.mkdir(parents=True, exist_ok=True)
    server = start_on_a_free_port(home, db, **env)
    try:
        yield server
    finally:
        stop_server(server)


def start_on_a_free_port(home: Path, db: str | None = None, **env: str) -> Server:
    """`start_server` on a free port; on another if that one was taken meanwhile."""
    for _ in range(2):
        try:
            return start_server(home, free_port(), db, **env)
        except PortTaken:
            continue
    return start_server(home, free_port(), db, **env)


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "it") -> Any:
    """`predicate()` as soon as it is truthy; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


# -- `otto orchestrator` processes ------------------------------------------------------


def connected(client: httpx.Client, name: str) -> bool:
    answer = client.get("/v1/orchestrators")
    return any(o["name"] == name and o["connected"] for o in answer.json()["orchestrators"])


@contextmanager
def orchestrator(
    url: str,
    name: str,
    home: Path,
    labels: str = "",
    token: str | None = None,
    grace: float = 2.0,
    extra: Sequence[str] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """A real `otto orchestrator` process, connected when this yields; stopped after."""
    process = start_orchestrator(url, name, home, labels, token, grace, extra)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        first = url.split(",")[0]  # `url`: a server, or replicas' comma separated
        with httpx.Client(base_url=first, headers=headers, timeout=5) as client:
            wait_for(lambda: connected(client, name), 20, f"orchestrator {name}")
        yield process
    finally:
        stop_orchestrator(process)


def start_orchestrator(
    url: str,
    name: str,
    home: Path,
    labels: str = "",
    token: str | None = None,
    grace: float = 2.0,
    extra: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`extra`: more options, e.g. `--runtime podman`; `environ`: more variables."""
    home.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "otto.cli", "orchestrator", "--server", url, "--name", name]
    args += ["--workspace", str(home / name), "--capacity", "2", "--grace", str(grace), *extra]
    if labels:
        args += ["--labels", labels]
    env = {k: v for k, v in os.environ.items() if k != "OTTO_TOKEN"}
    if token:
        env["OTTO_TOKEN"] = token
    env.update(environ or {})
    log = open(home / f"orchestrator-{name}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_orchestrator(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
