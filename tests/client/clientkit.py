"""Helpers of the client tests: `otto` as a user runs it, and waiting on runs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from otto.client import OttoClient
from serverkit import Server


def otto(
    *args: str, server: Server | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`otto ARGS` as a user runs it (with --server when given)."""
    extra = ["--server", server.url] if server is not None else []
    return subprocess.run(
        [sys.executable, "-m", "otto.cli", *args, *extra],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def wait_complete(client: OttoClient, uuid: str, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        document = client.pipeline(uuid)
        if document["state"] == "Complete":
            return document
        time.sleep(0.05)
    raise AssertionError(f"pipeline {uuid} did not complete within {timeout} s")


def wait_step_running(client: OttoClient, uuid: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        document = client.pipeline(uuid)
        contexts = [c for b in document["batches"] for c in b["contexts"]]
        if any(s["state"] == "Running" for c in contexts for s in c["steps"]):
            return
        time.sleep(0.05)
    raise AssertionError(f"no step of {uuid} started within {timeout} s")
