"""Helpers of the client tests: `otto` as a user runs it, and waiting on runs."""

from __future__ import annotations

import subprocess
import sys
import threading
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


def follow_gated_run(
    server: Server, client: OttoClient, ottofile: str, gate: Path, opens_on: str
) -> tuple[str, list[str]]:
    """Start `ottofile` (its `GATE`: the path `gate`) and follow its logs: the run's UUID
    and the lines `otto logs UUID --follow` prints, stripped. `gate` is touched (and
    "(gate opened)" recorded) as the line `opens_on` arrives, so a step waiting on it
    proves that line came while the step still ran."""
    uuid = client.create(ottofile=ottofile.replace("GATE", str(gate))).uuid
    follow = subprocess.Popen(
        [sys.executable, "-m", "otto.cli", "logs", uuid, "--follow", "--server", server.url],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert follow.stdout is not None
    fallback = threading.Timer(60, gate.touch)  # never to hang: then the line came too late
    fallback.start()
    lines: list[str] = []
    try:
        for line in follow.stdout:
            lines.append(line.strip())
            if lines[-1] == opens_on and not gate.exists():
                gate.touch()
                lines.append("(gate opened)")
    finally:
        fallback.cancel()
    assert follow.wait(30) == 0
    return uuid, lines
