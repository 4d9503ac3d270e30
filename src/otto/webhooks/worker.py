"""The background half of a push: Ottofile at the pushed SHA → parser → PSM.

Acknowledged pushes wait as `queued` rows in the inbox (also those left over from
before a restart). This thread hands each repository's pushes, in order, to one of
`LANES` lane threads, so repositories are served concurrently and a slow or hanging
one holds up only its own pushes. A repository that does not answer is tried again
after each delay of the back-off (its lane waits; the row stays queued); a commit
the repository does not have, or one without a usable Ottofile (missing, not
parsing, or calling a step wrongly: `otto.steps.checking`), becomes at once a
visible run, Complete with Error (`config_error`), never a silent drop — and
nothing of it runs.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from otto.model import Checkout, Pipeline
from otto.parser import ParseError
from otto.psm import CONFIG_ERROR, About, Conflict, Created, PipelineStateMachine
from otto.psm.records import DEFAULT_BRANCH_DETAIL
from otto.serverlog import fields
from otto.steps.checking import check_ottofile
from otto.webhooks.inbox import ABORTED, BUILT, CREATED, IGNORED, Inbox, Push, RunInfo
from otto.webhooks.mirror import (
    Mirrors,
    NoSuchCommit,
    NoSuchFile,
    Unreachable,
    without_credentials,
)
from otto.webhooks.projects import Project, short_ref
from otto.webhooks.pulls import is_closing, request_refs

log = logging.getLogger("otto.webhooks")

SUPERSEDED, PR_CLOSED = "superseded", "pr_closed"
LANES = 4  # repositories whose pushes are handled at the same time
IDLE = 5.0  # seconds between two looks at the inbox when nothing wakes the worker
OTHER_REPLICA_PAUSE = 1.0  # seconds before a repository another replica serves is tried


def _checkout(push: Push) -> Checkout:
    """The pushed commit, for the run's workspaces (its branch or tag fetched first)."""
    named = push.ref.startswith(("refs/heads/", "refs/tags/"))
    return Checkout(url=push.clone_url, sha=push.sha, branch=short_ref(push.ref) if named else None)


def _trigger(push: Push) -> str:
    """What started a run, for people: `push by ada`, `pull_request #12 by alice`."""
    number = (push.details or {}).get("number") if push.event == "pull_request" else None
    what = f"{push.event} #{number}" if number is not None else push.event
    return f"{what} by {push.pusher}" if push.pusher else what


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
        lanes: int = LANES,
    ) -> None:
        super().__init__(name="webhook-pushes", daemon=True)
        self.psm, self.inbox, self.mirrors = psm, inbox, mirrors
        self.project = projects
        self.backoff = backoff
        self.lanes = lanes
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._busy: set[str] = set()  # clone URLs a lane is handling pushes of
        self._not_before: dict[str, float] = {}  # clone URL → when to fetch from it again
        self._failures: dict[str, int] = {}  # delivery → its failed fetches so far
        self._ready: queue.SimpleQueue[tuple[str, list[Push]] | None] = queue.SimpleQueue()
        self._lane_threads: list[threading.Thread] = []

    def run(self) -> None:
        for number in range(self.lanes):
            name = f"webhook-pushes-{number}"
            lane = threading.Thread(target=self._serve_lane, name=name, daemon=True)
            lane.start()
            self._lane_threads.append(lane)
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                self._schedule()
            except Exception:  # keep serving: the rows stay queued and are tried again
                log.exception("reading queued pushes failed")
                self.stopping.wait(1.0)
            self.wake.wait(self._pause())
        for _ in range(self.lanes):
            self._ready.put(None)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking pushes, and wait (at most `timeout` seconds in all) for those being
        handled: a lane still fetching from a hanging repository is left behind."""
        deadline = time.monotonic() + timeout
        self.stopping.set()
        self.wake.set()
        self.join(timeout)
        for lane in self._lane_threads:
            lane.join(max(0.0, deadline - time.monotonic()))

    def _schedule(self) -> None:
        """Hand each repository's queued pushes, oldest first, to a lane: one lane per
        repository at a time, none to a repository waiting out its back-off."""
        with self._lock:
            # A lane busy now may finish rows while they are read: its repository waits
            # for the next pass (the lane wakes the worker when it is done).
            busy_before = set(self._busy)
        by_url: dict[str, list[Push]] = {}
        for push in self.inbox.queued():
            by_url.setdefault(push.clone_url, []).append(push)
        now = time.monotonic()
        with self._lock:
            for url, pushes in by_url.items():
                if url in busy_before or url in self._busy:
                    continue
                if self._not_before.get(url, 0.0) > now:
                    continue
                self._not_before.pop(url, None)
                self._busy.add(url)
                self._ready.put((url, pushes))

    def _pause(self) -> float:
        """Seconds until the next look at the inbox: when the first back-off ends."""
        now = time.monotonic()
        with self._lock:
            due = min((t for t in self._not_before.values() if t > now), default=now + IDLE)
        return min(IDLE, max(0.05, due - now))

    def _serve_lane(self) -> None:
        while (work := self._ready.get()) is not None:
            url, pushes = work
            try:
                self._lane(url, pushes)
            except Exception:  # the rows stay queued: tried again after a pause
                log.exception("handling pushes of %s failed", without_credentials(url))
                with self._lock:
                    self._not_before[url] = time.monotonic() + 1.0
            finally:
                with self._lock:
                    self._busy.discard(url)
                self.wake.set()  # more pushes of this repository may have come meanwhile

    def _lane(self, url: str, pushes: list[Push]) -> None:
        """Handle one repository's pushes in order; stop at one whose repository did not
        answer, to try it (and those after it) again after its back-off.

        Replicas sharing a database take a repository's pushes in turn (`Store.exclusive`):
        one whose lock another holds looks again after a pause; one that has it handles
        only the pushes still queued (another may have handled some since they were read)."""
        with self.inbox.store.exclusive(f"pushes {url}") as mine:
            if not mine:
                with self._lock:
                    self._not_before[url] = time.monotonic() + OTHER_REPLICA_PAUSE
                return
            pushes = [p for p in pushes if self.inbox.still_queued(p.delivery)]
            self._prefetch(url, pushes)
            for push in pushes:
                if self.stopping.is_set() or not self._fetched(push):
                    return
                self.handle(push)

    def _fetched(self, push: Push) -> bool:
        """Whether `push` can be handled now: its Ottofile was read, cannot be (the run
        says why), or the back-off is spent. False: the repository did not answer and
        its lane waits for the next delay of the back-off."""
        project = self.project(push.project)
        failures = self._failures.pop(push.delivery, 0)
        if project is None or project.pipeline.inline is not None or is_closing(push):
            return True
        if failures >= len(self.backoff):
            return True  # the last try is the run's own read: it says what failed
        try:
            self._read(project, push)
        except (NoSuchCommit, NoSuchFile):
            return True  # handled at once: the run says why
        except Unreachable as exc:
            self._failures[push.delivery] = failures + 1
            delay = self.backoff[failures]
            log.warning("push %s: %s; again in %g s", push.delivery, exc, delay)
            with self._lock:
                self._not_before[push.clone_url] = time.monotonic() + delay
            return False
        return True

    def _prefetch(self, url: str, pushes: list[Push]) -> None:
        """With several pushes of one repository waiting, fetch their commits in one go."""
        shas = [p.sha for p in pushes if self._reads_ottofile(p)]
        if len(shas) < 2:
            return
        try:
            self.mirrors.prefetch(url, shas)
        except Unreachable as exc:  # each push retries on its own
            log.info("prefetching %d commits of %s: %s", len(shas), without_credentials(url), exc)

    def _reads_ottofile(self, push: Push) -> bool:
        project = self.project(push.project)
        return project is not None and project.pipeline.inline is None

    def handle(self, push: Push) -> None:
        project = self.project(push.project)
        if project is None:
            self.inbox.finish(push.delivery, IGNORED, f"project {push.project} is gone")
            return
        if is_closing(push):
            self._close_request(project, push)
            return
        created, rejected = self.create_run(project, push, force=push.force)
        if created.duplicate:
            said = fields(delivery=push.delivery, sha=push.sha, run=created.uuid)
            log.info("webhook built: the commit already has a run", extra=said)
            reason = f"commit {push.sha} already built"
            self.inbox.finish(push.delivery, BUILT, reason, created.uuid)
            return
        if rejected is None:
            self._supersede(project, push, created.uuid)
        reason = f"{rejected[0]}: {rejected[1]}" if rejected else ""
        self.inbox.finish(push.delivery, CREATED, reason, created.uuid)  # PSM logged the run

    def create_run(
        self, project: Project, push: Push, force: bool = False, idempotency: str | None = None
    ) -> tuple[Created, tuple[str, str] | None]:
        """Ottofile at the push's commit → pipeline → a run, and why it cannot run (None
        when it can: a rejected one is still created, visible). Pushes, manual and
        scheduled runs (`otto.webhooks.manual`, `otto.webhooks.schedules`) all start here.
        `idempotency`: a key the PSM answers the same run for, however often it is used."""
        model, rejected = self._pipeline(project, push)
        info = RunInfo(
            model.uuid,
            project.name,
            push.full_name,
            push.clone_url,
            push.ref,
            (push.details or {}).get("head_sha") or push.sha,  # where its statuses go
            project.checkout,
        )
        self.inbox.add_run(info)  # before the run exists: its first transition finds it
        created = self.psm.create(
            model,
            repo=push.clone_url,
            ref=push.ref or None,  # a run of a bare SHA names no ref
            sha=push.sha,
            force=force,
            idempotency=(idempotency, idempotency) if idempotency else None,
            actor=f"webhook:{project.name}",
            rejected=rejected,
            checkout=_checkout(push) if project.checkout else None,
            about=About(
                project.name,
                _trigger(push),
                push.message,
                event=push.event,
                details=_with_default_branch(push.details, project),
            ),
        )
        if created.duplicate or created.replayed:
            self.inbox.drop_run(model.uuid)
        return created, rejected

    def _supersede(self, project: Project, push: Push, newer: str) -> None:
        """Abort the older runs of this branch (or pull request) the project's policy lets
        a push replace: `pending` ones that have not started a context yet, or (`running`)
        any still going. A default branch is never superseded: each of its commits is a
        record; nor is a tag."""
        if project.supersede == "none":
            return
        for older in self._running(project, push, replaced=newer):
            if project.supersede == "pending" and _started(self.psm.get(older)):
                continue
            if self._abort(project, older, SUPERSEDED, {"superseded_by": newer}):
                log.info("run superseded", extra=fields(uuid=older, by=newer))

    def _close_request(self, project: Project, push: Push) -> None:
        """A pull request closed (or merged): abort its runs still going."""
        running = self._running(project, push)
        aborted = [uuid for uuid in running if self._abort(project, uuid, PR_CLOSED)]
        number = (push.details or {}).get("number")
        said = f"pull request #{number} closed: {len(aborted)} run(s) aborted"
        log.info(said, extra=fields(delivery=push.delivery, runs=aborted or None))
        self.inbox.finish(push.delivery, ABORTED, said)

    def _running(self, project: Project, push: Push, replaced: str | None = None) -> list[str]:
        """The runs still going that a push's run replaces (`replaced`, the new one, left
        out): its pull request's, or its branch's unless that is a default branch."""
        if push.event == "pull_request":
            refs = request_refs(push)
        else:
            branch = push.ref.removeprefix("refs/heads/")
            if branch == push.ref or branch in project.default_branches:
                return []
            refs = (push.ref,)
        found = []
        for ref in refs:
            older, _ = self.psm.list(repo=push.clone_url, ref=ref, state="Running", limit=500)
            found += [run["uuid"] for run in older if run["uuid"] != replaced]
        return found

    def _abort(
        self, project: Project, run: str, reason: str, data: dict[str, Any] | None = None
    ) -> bool:
        """Abort `run`; False when it ended meanwhile."""
        try:
            self.psm.abort(run, actor=f"webhook:{project.name}", reason=reason, data=data)
        except Conflict:
            return False
        return True

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
        """The Ottofile at the push's commit (one attempt: the lanes retry)."""
        return self.mirrors.read(push.clone_url, push.sha, push.ref, project.pipeline.path)


def _with_default_branch(details: dict[str, Any] | None, project: Project) -> dict[str, Any] | None:
    """The trigger's details plus the project's first default branch, where a branch
    without its own cache restores from (`OTTO_DEFAULT_BRANCH`, `otto.steps.caches`)."""
    if not project.default_branches:
        return details
    return {**(details or {}), DEFAULT_BRANCH_DETAIL: project.default_branches[0]}
