"""Webhooks (DESIGN §1): forge push payloads → Ottofile at the pushed SHA → parser → PSM.

`Webhooks` is the part's one entry point for `otto server`: its HTTP
endpoints, its background threads (the push worker; the dispatcher, which
turns transitions into commit statuses and outbound webhook deliveries in the
outbox; the sender, which delivers them) and `checkout(pipeline)`, which
tells the orchestrator which commit a context's workspace starts from.

`OTTO_DELIVERY_BACKOFF` (seconds, comma-separated) replaces the default
retry delays of outbound requests; as many retries as delays.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from otto.agent.invocation import Checkout
from otto.api import Endpoint
from otto.psm import PipelineStateMachine
from otto.webhooks.deliveries import DeliveriesApi
from otto.webhooks.dispatch import Dispatcher
from otto.webhooks.github import ForgeHooks
from otto.webhooks.ledger import Ledger
from otto.webhooks.mirror import Mirrors
from otto.webhooks.outbox import Outbox
from otto.webhooks.projects import Project, load_projects, short_ref
from otto.webhooks.sender import BACKOFF, Sender
from otto.webhooks.statuses import status_entries
from otto.webhooks.subscribers import webhook_entries
from otto.webhooks.worker import PushWorker

__all__ = ["Project", "Webhooks", "load_projects"]

log = logging.getLogger("otto.webhooks")


class Webhooks:
    def __init__(self, psm: PipelineStateMachine, home: Path, public_url: str) -> None:
        found, problems = load_projects(home / "projects.d")
        for problem in problems:
            log.error("project not loaded: %s", problem)
        self.problems = problems
        self.projects = {p.name: p for p in found}
        self.ledger = Ledger(psm.store)
        self.worker = PushWorker(psm, self.ledger, Mirrors(home / "mirrors"), self.projects.get)
        self.outbox = Outbox(psm.store, start=psm.events.last_seq)
        self.sender = Sender(self.outbox, backoff_from_env())
        self.dispatcher = Dispatcher(
            psm,
            self.ledger,
            self.outbox,
            lambda: list(self.projects.values()),
            [status_entries, webhook_entries],
            public_url,
            self.sender.wake.set,
        )
        self.deliveries = DeliveriesApi(self.outbox, self.sender.wake.set)
        self.forges = ForgeHooks(
            lambda: list(self.projects.values()), self.ledger, self.worker.wake.set
        )

    def endpoints(self) -> list[Endpoint]:
        checkout = Endpoint(
            "GET",
            "/v1/pipelines/{uuid}/checkout",
            self.checkout_endpoint,
            "The commit a run's workspaces start from (null: none), for remote orchestrators",
        )
        return [*self.forges.endpoints(), *self.deliveries.endpoints(), checkout]

    def checkout_endpoint(self, request: Request) -> Response:
        found = self.checkout(request.path_params["uuid"])
        return JSONResponse({"checkout": found.model_dump() if found else None})

    def start(self) -> None:
        self.sender.start()
        self.dispatcher.start()
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self.dispatcher.stop()
        self.sender.stop()

    def secret_variables(self) -> set[str]:
        """The variables holding any project's secrets: their values reach no step's log."""
        return {name for p in self.projects.values() for name in p.secret_variables()}

    def checkout(self, pipeline: str) -> Checkout | None:
        """The commit a run from a push starts from, unless its project said `checkout: false`."""
        run = self.ledger.run(pipeline)
        if run is None or not run.checkout:
            return None
        branch = short_ref(run.ref) if run.ref.startswith(("refs/heads/", "refs/tags/")) else None
        return Checkout(url=run.clone_url, sha=run.sha, branch=branch)


def backoff_from_env() -> tuple[float, ...]:
    raw = os.environ.get("OTTO_DELIVERY_BACKOFF", "").strip()
    if not raw:
        return BACKOFF
    try:
        delays = tuple(float(part) for part in raw.split(","))
    except ValueError:
        log.error("OTTO_DELIVERY_BACKOFF=%r: not comma-separated seconds; using defaults", raw)
        return BACKOFF
    return delays
