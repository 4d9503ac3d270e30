"""Commit statuses: each run from a push reports to the GitHub statuses API.

`pending` when the run starts, then `success` / `failure` / `error` when it
is Complete (Unstable as the project says). `POST {api}/repos/{owner}/{repo}
/statuses/{sha}` with `state`, `target_url`, `description`, `context`, the
token from the project's `statuses.token_env`, retried with back-off. The
reporter follows the PSM's committed transitions on its own thread, so a
slow or failing API never holds up the state machine.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

import httpx

from otto.psm import PipelineStateMachine, Transition
from otto.psm.states import COMPLETE, PENDING, RUNNING
from otto.webhooks.ledger import Ledger, RunInfo
from otto.webhooks.projects import Project

log = logging.getLogger("otto.webhooks.statuses")

DESCRIPTION_LIMIT = 140  # GitHub refuses longer descriptions
STATES = {"Success": "success", "Failed": "failure", "Aborted": "error", "Error": "error"}


class StatusReporter(threading.Thread):
    def __init__(
        self,
        psm: PipelineStateMachine,
        ledger: Ledger,
        projects: Callable[[str], Project | None],
        public_url: str,
        retries: tuple[float, ...] = (1.0, 2.0, 4.0),
    ) -> None:
        super().__init__(name="webhook-statuses", daemon=True)
        self.psm, self.ledger, self.project = psm, ledger, projects
        self.public_url = public_url.rstrip("/")
        self.retries = retries
        self.stopping = threading.Event()
        self.client = httpx.Client(timeout=10)
        self._after = psm.events.last_seq

    def run(self) -> None:
        for t in self.psm.events.stream(self._after, self.stopping):
            if t.entity != "pipeline" or t.to_state not in (RUNNING, COMPLETE):
                continue
            try:
                self.report(t)
            except Exception:  # never let one status stop the others
                log.exception("reporting a status for %s failed", t.pipeline)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)
        self.client.close()

    def report(self, t: Transition) -> None:
        run = self.ledger.run(t.pipeline)
        if run is None:
            return  # not from a push
        project = self.project(run.project)
        if project is None or project.statuses is None or not run.full_name:
            return
        if t.to_state == RUNNING and t.from_state == PENDING:
            state, description = "pending", "Otto: running"
        elif t.to_state == COMPLETE:
            status = t.status or "Error"
            state = STATES.get(status, "error")
            if status == "Unstable":
                state = project.statuses.unstable_as
            message = (t.data or {}).get("message") if t.reason == "config_error" else None
            description = f"Otto: {status}" + (f": {message}" if message else "")
        else:
            return
        self.post(project, run, state, description)

    def post(self, project: Project, run: RunInfo, state: str, description: str) -> None:
        statuses = project.statuses
        assert statuses is not None
        url = f"{statuses.api_url.rstrip('/')}/repos/{run.full_name}/statuses/{run.sha}"
        body = {
            "state": state,
            "target_url": f"{self.public_url}/v1/pipelines/{run.pipeline}",
            "description": _clip(description),
            "context": statuses.context,
        }
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "otto-ci",
        }
        token = os.environ.get(statuses.token_env) if statuses.token_env else None
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for delay in (*self.retries, None):
            problem, again = self._try(url, body, headers)
            if problem is None:
                return
            if delay is None or not again or self.stopping.is_set():
                log.warning("status %s for %s lost: %s", state, run.sha, problem)
                return
            log.info("status %s for %s: %s; again in %.0f s", state, run.sha, problem, delay)
            time.sleep(delay)

    def _try(
        self, url: str, body: dict[str, str], headers: dict[str, str]
    ) -> tuple[str | None, bool]:
        """(what went wrong or None, worth trying again)."""
        try:
            answer = self.client.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            return str(exc) or type(exc).__name__, True
        if answer.status_code < 300:
            return None, False
        again = answer.status_code >= 500 or answer.status_code in (403, 429)  # rate limits
        return f"HTTP {answer.status_code}: {answer.text[:200]}", again


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 1] + "…"
