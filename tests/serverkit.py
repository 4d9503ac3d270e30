"""Run a real `otto server` process on a free loopback port, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    home: Path

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)


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
    server = start_server(home, free_port(), db, **env)
    try:
        yield server
    finally:
        stop_server(server)
