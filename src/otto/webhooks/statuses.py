"""Commit statuses: each run from a push reports to the GitHub statuses API.

`pending` when the run is accepted (also a run rejected at once for a broken
Ottofile: `pending`, then `error`), then `success` / `failure` / `error` when
it is Complete (Unstable as the project says); while a context waits at an approval
gate, `pending` "waiting for approval" (and `pending` again once it is approved).
`POST {api}/repos/{owner}/{repo}/statuses/{sha}` with `state`, `target_url`,
`description`, `context` and the token from the project's `statuses.token_env`. A
run rejected for its Ottofile says why in a few words (`Ottofile not found at <sha>`, `Ottofile:4:5:
expected …`): the first line of its error, without URLs or server paths (the whole
error stays in the run, for the server's users). The requests go
through the outbox (outbox.py), so they survive a restart, are retried with
back-off, and the statuses of one commit arrive in order.
"""

from __future__ import annotations

import json
import re

from otto.psm import Transition
from otto.psm.states import COMPLETE, PENDING, WAITING, Entity
from otto.webhooks.inbox import RunInfo
from otto.webhooks.outbox import Entry
from otto.webhooks.projects import Project

DESCRIPTION_LIMIT = 140  # GitHub refuses longer descriptions
# What a description never shows: URLs (with credentials or not, scp-like too), paths.
URL = re.compile(r"[A-Za-z][\w+.-]*://[^\s'\"()<>`]*|[\w.-]+@[\w.-]+:[\w./~-]*")
SERVER_PATH = re.compile(r"(?<![\w.~-])/[^\s:'\"`]+")
STATES = {"Success": "success", "Failed": "failure", "Aborted": "error", "Error": "error"}
HEADERS = {
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
    "User-Agent": "otto-ci",
}


def run_page(public_url: str, pipeline: str) -> str:
    """A run's page in the dashboard."""
    return f"{public_url.rstrip('/')}/pipelines/{pipeline}"


def status_entries(t: Transition, run: RunInfo, project: Project, public_url: str) -> list[Entry]:
    """The commit status a pipeline transition reports, if any."""
    statuses = project.statuses
    if statuses is None or not run.full_name:
        return []
    if t.entity == Entity.CONTEXT and WAITING in (t.from_state, t.to_state):
        if t.to_state == WAITING:
            state, description = "pending", "Otto: waiting for approval"
        elif t.reason == "approved":
            state, description = "pending", "Otto: approved, running"
        else:
            return []  # it ended: the run's outcome follows
    elif t.entity != Entity.PIPELINE:
        return []
    elif t.from_state is None and t.to_state == PENDING:
        state, description = "pending", "Otto: accepted"
    elif t.to_state == COMPLETE:
        status = t.status or "Error"
        state = STATES.get(status, "error")
        if status == "Unstable":
            state = statuses.unstable_as
        message = (t.data or {}).get("message") if t.reason == "config_error" else None
        description = f"Otto: {status}" + (f": {_for_people(message)}" if message else "")
    else:
        return []
    url = f"{statuses.api_url.rstrip('/')}/repos/{run.full_name}/statuses/{run.sha}"
    body = {
        "state": state,
        "target_url": run_page(public_url, run.pipeline),
        "description": _clip(description),
        "context": statuses.context,
    }
    return [
        Entry(
            kind="status",
            event=f"status.{state}",
            project=project.name,
            pipeline=t.pipeline,
            seq=t.seq,
            url=url,
            lane=f"status {url} {statuses.context}",
            ordered=True,
            auth_env=statuses.token_env,
            body=json.dumps(body),
        )
    ]


def status_headers(token: str | None) -> dict[str, str]:
    headers = {**HEADERS, "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def worth_retrying(code: int) -> bool:
    """A refused status is tried again only when GitHub is down or rate-limiting."""
    return code >= 500 or code in (403, 429)


def _for_people(error: str) -> str:
    """What failed, from the first line of a rejected run's error (the lines after it
    are details: a parse error's excerpt, git's words), with no URL or server path."""
    first = next((line for line in error.splitlines() if line.strip()), "")
    return SERVER_PATH.sub("<path>", URL.sub("<url>", first))


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 1] + "…"
