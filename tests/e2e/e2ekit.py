"""Helpers for the end-to-end tests: submit to a real `otto server`, poll with deadlines."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from agentkit import alive, wait_for

Run = dict[str, Any]


def submit(client: httpx.Client, ottofile: str | None = None, model: Run | None = None) -> str:
    body: dict[str, Any] = {"ottofile": ottofile} if model is None else {"model": model}
    response = client.post("/v1/pipelines", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["uuid"])


def show(client: httpx.Client, uuid: str) -> Run:
    response = client.get(f"/v1/pipelines/{uuid}")
    assert response.status_code == 200, response.text
    return dict(response.json())


def poll(
    client: httpx.Client,
    uuid: str,
    predicate: Callable[[Run], bool],
    seconds: float = 30.0,
    every: float = 0.05,
) -> Run:
    """The run as soon as `predicate(run)` holds; fails the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        run = show(client, uuid)
        if predicate(run):
            return run
        if time.monotonic() > deadline:
            summary = {c["name"]: c["state"] for b in run["batches"] for c in b["contexts"]}
            raise AssertionError(
                f"timed out after {seconds} s; pipeline {run['state']}/{run['status']}, "
                f"contexts {summary}"
            )
        time.sleep(every)


def wait_complete(client: httpx.Client, uuid: str, seconds: float = 30.0) -> Run:
    return poll(client, uuid, lambda run: run["state"] == "Complete", seconds)


def contexts(run: Run) -> dict[str, Run]:
    """Every context of the run by name."""
    return {c["name"]: c for b in run["batches"] for c in b["contexts"]}


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def object_bytes(client: httpx.Client, key: str) -> bytes | None:
    """An object's content through the HTTP API, or None while it does not exist."""
    response = client.get(f"/v1/objects/{key}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.content


def step_log_key(run: Run, context: Run, step: int = 0) -> str:
    return f"{run['uuid']}/{context['uuid']}/{context['steps'][step]['uuid']}.log"


def read_pid(path: Path) -> int:
    """The PID a step wrote to `path`, once it is there in full."""
    text = wait_for(lambda: path.exists() and path.read_text().endswith("\n") and path.read_text())
    return int(text)


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2 :].split()[1])


def assert_gone(pid: int) -> None:
    """The process is gone: no such PID, or at most a zombie orphaned to PID 1.

    A killed step's own children are orphans reparented to PID 1; some container
    inits never reap them, which no CI can help, so such a zombie counts as gone.
    A zombie whose parent is still an Otto process would be a leak, and fails.
    """
    assert not alive(pid), f"process {pid} is still running"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    assert parent_of(pid) == 1, f"zombie {pid} not reaped by its parent {parent_of(pid)}"
