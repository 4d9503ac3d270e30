"""Webhooks (DESIGN §1): forge push payloads → Ottofile at the pushed SHA → parser → PSM.

`Webhooks` is the part's one entry point for `otto server`: its HTTP
endpoints, its two background threads (the push worker and the commit-status
reporter) and `checkout(pipeline)`, which tells the orchestrator which commit
a context's workspace starts from.
"""

from __future__ import annotations

import logging
from pathlib import Path

from otto.agent.invocation import Checkout
from otto.api import Endpoint
from otto.psm import PipelineStateMachine
from otto.webhooks.github import GithubHooks
from otto.webhooks.ledger import Ledger
from otto.webhooks.mirror import Mirrors
from otto.webhooks.projects import Project, load_projects, short_ref
from otto.webhooks.statuses import StatusReporter
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
        self.reporter = StatusReporter(psm, self.ledger, self.projects.get, public_url)
        self.github = GithubHooks(
            lambda: list(self.projects.values()), self.ledger, self.worker.wake.set
        )

    def endpoints(self) -> list[Endpoint]:
        return self.github.endpoints()

    def start(self) -> None:
        self.reporter.start()
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self.reporter.stop()

    def checkout(self, pipeline: str) -> Checkout | None:
        """The commit a run from a push starts from, unless its project said `checkout: false`."""
        run = self.ledger.run(pipeline)
        if run is None or not run.checkout:
            return None
        branch = short_ref(run.ref) if run.ref.startswith(("refs/heads/", "refs/tags/")) else None
        return Checkout(url=run.clone_url, sha=run.sha, branch=branch)
