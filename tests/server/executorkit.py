"""A synthetic executor that drives contexts over the HTTP API, as a remote orchestrator would."""

from __future__ import annotations

from typing import Any

import httpx


def drive_context(
    client: httpx.Client, context: dict[str, Any], orchestrator: str, exit_code: int = 0
) -> int | None:
    """Claim one awarded context, run its steps (reporting each), finish it; returns the
    epoch, or None when the claim is refused (409: the context moved on since it was read,
    e.g. retried after its lease ran out), as a real orchestrator lets it go."""
    uuid = context["uuid"]
    lease = client.post(f"/v1/contexts/{uuid}/claim", json={"orchestrator": orchestrator})
    if lease.status_code == 409:
        return None
    lease.raise_for_status()
    ref = {"orchestrator": orchestrator, "epoch": lease.json()["epoch"]}
    for step in context["steps"]:
        client.post(
            f"/v1/contexts/{uuid}/steps/{step['uuid']}/started", json=ref
        ).raise_for_status()
        client.post(
            f"/v1/contexts/{uuid}/steps/{step['uuid']}/finished",
            json={**ref, "exit_code": exit_code},
        ).raise_for_status()
    status = "Success" if exit_code == 0 else "Failed"
    client.post(f"/v1/contexts/{uuid}/finished", json={**ref, "status": status}).raise_for_status()
    return int(ref["epoch"])


def award_open(client: httpx.Client, orchestrator: str, pipeline: str | None = None) -> int:
    """Award every open context (of one pipeline, or all) to `orchestrator`."""
    opened = client.get("/v1/contexts/open").json()["contexts"]
    count = 0
    for ctx in opened:
        if pipeline is None or ctx["pipeline"] == pipeline:
            client.post(f"/v1/contexts/{ctx['uuid']}/award", json={"orchestrator": orchestrator})
            count += 1
    return count


def drive_pipeline(client: httpx.Client, uuid: str, orchestrator: str = "test") -> dict[str, Any]:
    """Run a pipeline to its end, batch by batch, with every step succeeding."""
    while True:
        run = client.get(f"/v1/pipelines/{uuid}").json()
        if run["state"] == "Complete":
            return run
        award_open(client, orchestrator, uuid)
        run = client.get(f"/v1/pipelines/{uuid}").json()
        for batch in run["batches"]:
            for ctx in batch["contexts"]:
                if ctx["state"] == "Pending" and ctx["orchestrator"] == orchestrator:
                    drive_context(client, ctx, orchestrator)
