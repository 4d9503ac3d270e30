"""Helpers for the browser tests: drive a real `otto server` over HTTP, gate steps on files."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from agentkit import alive
from serverkit import Server

if TYPE_CHECKING:
    from playwright.sync_api import expect
else:

    def expect(*args: Any, **kwargs: Any) -> Any:
        """Playwright's `expect`, imported when first used: without Playwright installed the
        test modules still import, and the browser fixture skips (or fails) them clearly."""
        from playwright.sync_api import expect as playwright_expect

        return playwright_expect(*args, **kwargs)


Run = dict[str, Any]
FINISHED = "Complete"


class Otto:
    """One server's HTTP API, remembering the runs it submitted (aborted if left unfinished)."""

    def __init__(self, server: Server, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.server = server
        self.client = httpx.Client(base_url=server.url, timeout=10, headers=headers)
        self.submitted: list[str] = []

    @property
    def url(self) -> str:
        return self.server.url

    def submit(self, ottofile: str) -> str:
        response = self.client.post("/v1/pipelines", json={"ottofile": ottofile})
        assert response.status_code == 201, response.text
        uuid = str(response.json()["uuid"])
        self.submitted.append(uuid)
        return uuid

    def run(self, uuid: str) -> Run:
        response = self.client.get(f"/v1/pipelines/{uuid}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def transitions(self, uuid: str) -> list[Run]:
        response = self.client.get(f"/v1/pipelines/{uuid}/transitions")
        assert response.status_code == 200, response.text
        return list(response.json()["transitions"])

    def wait(self, uuid: str, predicate: Callable[[Run], bool], seconds: float = 20.0) -> Run:
        """The run as soon as `predicate(run)` holds; fails after `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            run = self.run(uuid)
            if predicate(run):
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {seconds} s: {run['state']}/{run['status']}")
            time.sleep(0.05)

    def wait_complete(self, uuid: str, seconds: float = 20.0) -> Run:
        return self.wait(uuid, lambda run: run["state"] == FINISHED, seconds)

    def abort_unfinished(self) -> None:
        """Tidy up after a failed test: no run of it keeps running on a shared server."""
        for uuid in self.submitted:
            try:
                if self.run(uuid)["state"] != FINISHED:
                    self.client.post(f"/v1/pipelines/{uuid}/abort")
            except (httpx.HTTPError, AssertionError):
                pass  # the server is gone: nothing runs there any more

    def close(self) -> None:
        self.client.close()


def contexts(run: Run) -> dict[str, Run]:
    return {c["name"]: c for b in run["batches"] for c in b["contexts"]}


# The dashboard refreshes pages with running things every few seconds (durations count
# up) besides listening to the event stream. Tests that must see the stream at work turn
# that timer off before the page's scripts run: then only the stream can change the page.
NO_POLLING = "window.setInterval = () => 0;"


class Gates:
    """Files that gated steps wait for: `wait(name)` is shell for the step, `open(name)`
    lets it go on. Every gate opens at teardown, so no step waits forever."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.names: set[str] = set()
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.folder / name

    def wait(self, name: str) -> str:
        self.names.add(name)
        return f"while [ ! -f {self.path(name)} ]; do sleep 0.05; done"

    def open(self, name: str) -> None:
        self.path(name).touch()

    def open_all(self) -> None:
        for name in self.names:
            self.open(name)


def read_pid(path: Path, seconds: float = 15.0) -> int:
    """The PID a step wrote to `path`, once it is there in full."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and (text := path.read_text()).endswith("\n"):
            return int(text)
        time.sleep(0.02)
    raise AssertionError(f"no PID in {path} after {seconds} s")


def wait_gone(pid: int, seconds: float = 10.0) -> None:
    """The process is gone (or at most a zombie orphaned to PID 1, which no CI can reap)."""
    deadline = time.monotonic() + seconds
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still runs after {seconds} s"
        time.sleep(0.05)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    stat = Path(f"/proc/{pid}/stat").read_text()
    parent = int(stat[stat.rfind(")") + 2 :].split()[1])
    assert parent == 1, f"zombie {pid} not reaped by its parent {parent}"
