"""Outbound webhooks: a project's subscribers hear of its runs' transitions.

Each transition a subscriber wants (by entity and state, see `Subscriber`)
becomes a JSON POST, sent through the outbox (outbox.py):

    X-Otto-Event: transition
    X-Otto-Delivery: <id; the same on every retry, a replay gets a new one>
    X-Otto-Timestamp: <unix seconds of this attempt>
    X-Otto-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{body}")>

A receiver recomputes the signature over the timestamp, a dot and the raw
body, and refuses old timestamps (replayed requests). The body carries the
transition as `GET /v1/events` shows it, with its `seq`: deliveries to one
subscriber usually arrive in order, but retries can reorder them.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from otto.psm import Transition
from otto.redact import redact_url
from otto.webhooks.inbox import RunInfo
from otto.webhooks.outbox import Entry
from otto.webhooks.projects import Project


def webhook_entries(t: Transition, run: RunInfo, project: Project, public_url: str) -> list[Entry]:
    """A delivery for each of the project's subscribers that wants this transition."""
    wanting = [s for s in project.webhooks if s.wants(t.entity, t.to_state, t.status)]
    if not wanting:
        return []
    body = json.dumps(
        {
            "event": "transition",
            "project": project.name,
            "pipeline": {
                "uuid": t.pipeline,
                "url": f"{public_url.rstrip('/')}/v1/pipelines/{t.pipeline}",
                "repository": run.full_name,
                "clone_url": redact_url(run.clone_url),
                "ref": run.ref,
                "sha": run.sha,
            },
            "transition": t.to_dict(),
        },
        separators=(",", ":"),
    )
    return [
        Entry(
            kind="webhook",
            event=f"{t.entity}.{t.to_state}",
            project=project.name,
            pipeline=t.pipeline,
            seq=t.seq,
            url=s.url,
            lane=f"webhook {s.url}",
            ordered=False,
            auth_env=s.secret_env,
            body=body,
        )
        for s in wanting
    ]


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    signed = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()


def webhook_headers(delivery: str, secret: bytes, timestamp: str, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "otto-webhooks",
        "X-Otto-Event": "transition",
        "X-Otto-Delivery": delivery,
        "X-Otto-Timestamp": timestamp,
        "X-Otto-Signature": signature(secret, timestamp, body),
    }
