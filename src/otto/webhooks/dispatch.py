"""Committed transitions → outbox rows, on a thread of its own, from a persisted cursor.

The dispatcher reads the PSM's event hub from the outbox's cursor, asks each
source (commit statuses, subscribers) what a transition of a run from a push
owes, and writes those rows with the new cursor in one transaction. It never
sits in the state machine's path: a slow database write or a dead subscriber
delays only the notifications. After each batch it pauses for GATHER seconds, so
that a busy server's hundreds of commits a second make a few batches, not hundreds.
Batches with nothing to send move the cursor at most once a second; after a crash
they are looked at again, harmlessly (rows are keyed by what they tell).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from otto.psm import PipelineStateMachine, Transition
from otto.webhooks.inbox import Inbox, RunInfo
from otto.webhooks.outbox import Entry, Outbox
from otto.webhooks.projects import Project

log = logging.getLogger("otto.webhooks.dispatch")

Source = Callable[[Transition, RunInfo, Project, str], list[Entry]]
PAGE = 1_000
RUN_CACHE = 10_000
IDLE_PERSIST = 1.0  # seconds between cursor writes when nothing was owed
GATHER = 0.05  # seconds: how often, at most, transitions are read


class Dispatcher(threading.Thread):
    def __init__(
        self,
        psm: PipelineStateMachine,
        inbox: Inbox,
        outbox: Outbox,
        projects: Callable[[], list[Project]],
        sources: list[Source],
        public_url: str,
        enqueued: Callable[[], None],
    ) -> None:
        super().__init__(name="webhook-dispatch", daemon=True)
        self.psm, self.inbox, self.outbox = psm, inbox, outbox
        self.projects, self.sources = projects, sources
        self.public_url, self.enqueued = public_url, enqueued
        self.stopping = threading.Event()
        self._runs: dict[str, RunInfo | None] = {}

    def run(self) -> None:
        cursor = persisted = self.outbox.cursor()
        persisted_at = time.monotonic()
        while not self.stopping.is_set():
            batch = self.psm.events.after(cursor, PAGE)
            if not batch:
                if persisted < cursor and time.monotonic() - persisted_at >= IDLE_PERSIST:
                    persisted, persisted_at = self._persist([], cursor, persisted), time.monotonic()
                self.psm.events.wait(cursor, 0.5)
                continue
            try:
                entries = self.entries(batch)
            except Exception:  # the inbox could not be read: try the batch again
                log.exception("reading the runs of transitions failed")
                self.stopping.wait(1.0)
                continue
            upto = batch[-1].seq
            if entries or time.monotonic() - persisted_at >= IDLE_PERSIST:
                done = self._persist(entries, upto, persisted)
                if done != upto:
                    self.stopping.wait(1.0)  # the database is unwell: try the batch again
                    continue
                persisted, persisted_at = done, time.monotonic()
                if entries:
                    self.enqueued()
            cursor = upto
            self.stopping.wait(GATHER)
        if persisted < cursor:
            self._persist([], cursor, persisted)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)

    def _persist(self, entries: list[Entry], upto: int, persisted: int) -> int:
        try:
            self.outbox.enqueue(entries, upto)
        except Exception:
            log.exception("writing %d outbound requests failed", len(entries))
            return persisted
        return upto

    def entries(self, batch: list[Transition]) -> list[Entry]:
        """What the transitions of `batch` owe, in order."""
        projects = {p.name: p for p in self.projects() if p.webhooks or p.statuses}
        if not projects:
            return []
        found: list[Entry] = []
        for t in batch:
            run = self._run(t.pipeline)
            project = projects.get(run.project) if run else None
            if run is None or project is None:
                continue
            for source in self.sources:
                try:
                    found += source(t, run, project, self.public_url)
                except Exception:  # one odd transition must not stop the others
                    log.exception("turning transition %d into requests failed", t.seq)
        return found

    def _run(self, pipeline: str) -> RunInfo | None:
        """The push a pipeline came from (written before the pipeline, so never stale)."""
        if pipeline not in self._runs:
            if len(self._runs) >= RUN_CACHE:
                self._runs.pop(next(iter(self._runs)))
            self._runs[pipeline] = self.inbox.run(pipeline)
        return self._runs[pipeline]
