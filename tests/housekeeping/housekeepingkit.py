"""Helpers of the housekeeping tests: runs made and awaited over HTTP, `otto` as a user
runs it, and a project file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from serverkit import Server, wait_for

QUICK = (
    "pipeline { stage { name = 'Build' steps {"
    " sh 'echo built; mkdir -p out; echo x > out/f' archive artifacts: 'out', name: 'out' } } }"
)
FAILING = "pipeline { stage { name = 'Build' steps { sh 'echo broken; exit 1' } } }"


def gated(gate: Path) -> str:
    """A run whose step waits until `gate` exists."""
    return (
        "pipeline { stage { name = 'Wait' steps { sh 'echo waiting; "
        f"while [ ! -e {gate} ]; do sleep 0.05; done' }} }} }}"
    )


def create(client: httpx.Client, ottofile: str, **fields: Any) -> str:
    answer = client.post("/v1/pipelines", json={"ottofile": ottofile, **fields})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["uuid"])


def run(client: httpx.Client, ottofile: str, **fields: Any) -> dict[str, Any]:
    """Create a run and wait until it is complete: its document."""
    uuid = create(client, ottofile, **fields)
    return wait_for(lambda: complete(client, uuid), 60, f"run {uuid} to complete")


def complete(client: httpx.Client, uuid: str) -> dict[str, Any] | None:
    document: dict[str, Any] = client.get(f"/v1/pipelines/{uuid}").json()
    return document if document["state"] == "Complete" else None


def objects_of(client: httpx.Client, uuid: str) -> list[dict[str, Any]]:
    answer = client.get("/v1/objects", params={"prefix": f"{uuid}/"})
    assert answer.status_code == 200, answer.text
    return list(answer.json())


def otto(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otto.cli", *args, "--server", server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )


def gc(server: Server, dry_run: bool) -> dict[str, Any]:
    """`otto gc [--dry-run] --json`: what it listed or freed."""
    done = otto(server, "gc", "--json", *(["--dry-run"] if dry_run else []))
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def write_project(home: Path, name: str, extra: str = "") -> None:
    """A project file (its secret variable is set by the tests' servers)."""
    directory = home / "projects.d"
    directory.mkdir(parents=True, exist_ok=True)
    text = (
        f"source:\n  url: https://git.example.com/{name}.git\n"
        f"secret_env: HOUSEKEEPING_SECRET\n{extra}"
    )
    (directory / f"{name}.yml").write_text(text)
