"""The background half of a push: Ottofile at the pushed SHA → parser → PSM.

Acknowledged pushes wait as `queued` rows in the inbox; this thread takes
them in order (also those left over from before a restart). An unreachable
repository is retried with back-off; a commit without a usable Ottofile (missing,
not parsing, or calling a step wrongly: `otto.steps.checking`) still becomes a
visible run, Complete with Error (`config_error`), never a silent drop — and
nothing of it runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from otto.model import Checkout, Pipeline
from otto.parser import ParseError
from otto.psm import CONFIG_ERROR, About, Conflict, PipelineStateMachine
from otto.serverlog import fields
from otto.steps.checking import check_ottofile
from otto.webhooks.inbox import BUILT, CREATED, IGNORED, Inbox, Push, RunInfo
from otto.webhooks.mirror import Mirrors, NoSuchFile, Unreachable
from otto.webhooks.projects import Project, short_ref

log = logging.getLogger("otto.webhooks")

SUPERSEDED = "superseded"


def _checkout(push: Push) -> Checkout:
    """The pushed commit, for the run's workspaces (its branch or tag fetched first)."""
    named = push.ref.startswith(("refs/heads/", "refs/tags/"))
    return Checkout(url=push.clone_url, sha=push.sha, branch=short_ref(push.ref) if named else None)


def _started(run: dict[str, Any]) -> bool:
    return any(c["started_at"] for b in run["batches"] for c in b["contexts"])


class PushWorker(threading.Thread):
    def __init__(
        self,
        psm: PipelineStateMachine,
        inbox: Inbox,
        mirrors: Mirrors,
        projects: Callable[[str], Project | None],
        backoff: tuple[float, ...] = (1.0, 2.0, 4.0),
    ) -> None:
        super().__init__(name="webhook-pushes", daemon=True)
        self.psm, self.inbox, self.mirrors = psm, inbox, mirrors
        self.project = projects
        self.backoff = backoff
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                queued = self.inbox.queued()
                self._prefetch(queued)
                for push in queued:
                    if self.stopping.is_set():
                        return
                    self.handle(push)
            except Exception:  # keep serving: the row stays queued and is tried again
                log.exception("handling pushes failed")
                self.stopping.wait(1.0)
            self.wake.wait(5.0)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.join(10)

    def _prefetch(self, queued: list[Push]) -> None:
        """With several pushes waiting, fetch each repository's commits in one go."""
        if len(queued) < 2:
            return
        by_url: dict[str, list[str]] = {}
        for push in queued:
            project = self.project(push.project)
            if project is not None and project.pipeline.inline is None:
                by_url.setdefault(push.clone_url, []).append(push.sha)
        for url, shas in by_url.items():
            try:
                self.mirrors.prefetch(url, shas)
            except Unreachable as exc:  # each push retries on its own
                log.info("prefetching %d commits of %s: %s", len(shas), url, exc)

    def handle(self, push: Push) -> None:
        project = self.project(push.project)
        if project is None:
            self.inbox.finish(push.delivery, IGNORED, f"project {push.project} is gone")
            return
        model, rejected = self._pipeline(project, push)
        info = RunInfo(
            model.uuid,
            project.name,
            push.full_name,
            push.clone_url,
            push.ref,
            push.sha,
            project.checkout,
        )
        self.inbox.add_run(info)  # before the run exists: its first transition finds it
        created = self.psm.create(
            model,
            repo=push.clone_url,
            ref=push.ref,
            sha=push.sha,
            actor=f"webhook:{project.name}",
            rejected=rejected,
            checkout=_checkout(push) if project.checkout else None,
            about=About(
                project.name,
                f"push by {push.pusher}" if push.pusher else "push",
                push.message,
                event=push.event,
                details=push.details,
            ),
        )
        if created.duplicate:
            self.inbox.drop_run(model.uuid)
            said = fields(delivery=push.delivery, sha=push.sha, run=created.uuid)
            log.info("webhook built: the commit already has a run", extra=said)
            reason = f"commit {push.sha} already built"
            self.inbox.finish(push.delivery, BUILT, reason, created.uuid)
            return
        if rejected is None:
            self._supersede(project, push, created.uuid)
        reason = f"{rejected[0]}: {rejected[1]}" if rejected else ""
        self.inbox.finish(push.delivery, CREATED, reason, created.uuid)  # PSM logged the run

    def _supersede(self, project: Project, push: Push, newer: str) -> None:
        """Abort the older runs of this branch the project's policy lets a push replace:
        `pending` ones that have not started a context yet, or (`running`) any still
        going. A default branch is never superseded: each of its commits is a record."""
        branch = push.ref.removeprefix("refs/heads/")
        if project.supersede == "none" or branch == push.ref or branch in project.default_branches:
            return
        older, _ = self.psm.list(repo=push.clone_url, ref=push.ref, state="Running", limit=500)
        for run in older:
            if run["uuid"] == newer:
                continue
            if project.supersede == "pending" and _started(self.psm.get(run["uuid"])):
                continue
            try:
                self.psm.abort(
                    run["uuid"],
                    actor=f"webhook:{project.name}",
                    reason=SUPERSEDED,
                    data={"superseded_by": newer},
                )
            except Conflict:
                continue  # it ended meanwhile
            log.info("run superseded", extra=fields(uuid=run["uuid"], by=newer))

    def _pipeline(self, project: Project, push: Push) -> tuple[Pipeline, tuple[str, str] | None]:
        """The pipeline to create, and why it cannot run (None when it can)."""
        path = project.pipeline.path
        text = project.pipeline.inline
        if text is None:
            try:
                text = self._read(project, push)
            except (Unreachable, NoSuchFile) as exc:
                return Pipeline(), (CONFIG_ERROR, str(exc))
        name = f"{project.name}:inline" if project.pipeline.inline is not None else path
        try:
            pipeline, problems = check_ottofile(text, name)
        except ParseError as exc:
            return Pipeline(), (CONFIG_ERROR, str(exc))
        if not pipeline.batches:  # as the API refuses one: a run of nothing is no Success
            return Pipeline(), (CONFIG_ERROR, f"{name}: the pipeline has no stages")
        return pipeline, (CONFIG_ERROR, problems) if problems else None

    def _read(self, project: Project, push: Push) -> str:
        path = project.pipeline.path
        for delay in (*self.backoff, None):
            try:
                return self.mirrors.read(push.clone_url, push.sha, push.ref, path)
            except Unreachable as exc:
                if delay is None or self.stopping.is_set():
                    raise
                log.warning("push %s: %s; again in %.0f s", push.delivery, exc, delay)
                self.stopping.wait(delay)
        raise AssertionError("unreachable")
