"""Webhooks: forge push payloads → Ottofile at the pushed SHA → parser → PSM.

`Webhooks` is the part's one entry point for `otto server`: its HTTP
endpoints (forge hooks, deliveries, runs by hand), its background threads (the push
worker; the scheduler, which starts the projects' scheduled runs; the project watcher,
which reloads `projects.d` when a file in it changes, or on SIGHUP; the dispatcher, which
turns transitions into commit statuses and outbound webhook deliveries in the
outbox; the sender, which delivers them). A run from a push carries the commit its
workspaces start from (unless its project says `checkout: false`): the PSM hands it
out with every claim.

`OTTO_DELIVERY_BACKOFF` (seconds, comma-separated) replaces the default
retry delays of outbound requests; as many retries as delays.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from otto.endpoints import Endpoint
from otto.isolation.policy import MIN_SECRET
from otto.psm import PipelineStateMachine
from otto.redact import redact_url
from otto.serverlog import fields
from otto.webhooks.deliveries import DeliveriesApi
from otto.webhooks.dispatch import Dispatcher
from otto.webhooks.github import ForgeHooks
from otto.webhooks.inbox import Inbox
from otto.webhooks.manual import RunsApi, Starter
from otto.webhooks.mirror import Mirrors
from otto.webhooks.outbox import Outbox
from otto.webhooks.projects import PROJECT_FILES, Problem, Project, load_projects
from otto.webhooks.schedules import Deadlines, Scheduler
from otto.webhooks.sender import BACKOFF, Sender
from otto.webhooks.statuses import status_entries
from otto.webhooks.subscribers import webhook_entries
from otto.webhooks.worker import PushWorker

__all__ = ["Project", "Webhooks", "load_projects"]

log = logging.getLogger("otto.webhooks")


class Webhooks:
    def __init__(
        self, psm: PipelineStateMachine, home: Path, public_url: str, api_token: bool = True
    ) -> None:
        """`api_token`: whether the server's API needs a token; without one, no fork's pull
        request runs (its steps could use the API as any local process can)."""
        self.directory = home / "projects.d"
        self.projects: dict[str, Project] = {}
        self.problems: list[Problem] = []
        self.reloaded = threading.Event()  # wakes the scheduler: schedules may have changed
        self.watcher = ProjectWatcher(self.directory, self.reload)
        self.reload()
        self.ledger = Inbox(psm.store)
        mirrors = Mirrors(home / "mirrors")
        self.worker = PushWorker(psm, self.ledger, mirrors, lambda name: self.projects.get(name))
        starter = Starter(self.worker, mirrors)
        self.runs = RunsApi(starter, lambda name: self.projects.get(name))
        self.scheduler = Scheduler(
            Deadlines(psm.store), starter, lambda: list(self.projects.values()), self.reloaded
        )
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
            lambda: list(self.projects.values()),
            self.ledger,
            self.worker.wake.set,
            psm.built,
            public_url,
            forks=api_token,
        )

    def reload(self) -> None:
        """Read `projects.d` again and say what changed. A file that no longer loads keeps
        the version loaded before it (if any) until it is fixed, so that a slip while
        editing does not drop a project's pushes."""
        found, problems = load_projects(self.directory)
        loaded = {p.name: p for p in found}
        rejected = _by_file(problems)
        for file, its in rejected.items():
            kept = self.projects.get(file.stem) if file.stem not in loaded else None
            if kept is not None:
                loaded[kept.name] = kept
            problems_at = [p.at_line() for p in its]
            kept_too = "the version loaded before" if kept else None
            said = fields(file=str(file), kept=kept_too, problems=problems_at)
            log.error("project file rejected", extra=said)
        for name, project in loaded.items():
            if self.projects.get(name) != project:
                url = redact_url(project.source.url)
                log.info("project loaded", extra=fields(name=name, url=url))
        for name in self.projects.keys() - loaded.keys():
            log.info("project removed", extra=fields(name=name))
        self.projects, self.problems = dict(sorted(loaded.items())), problems
        said = fields(directory=str(self.directory), projects=len(loaded), rejected=len(rejected))
        log.info("projects read", extra=said)
        self.reloaded.set()

    def reload_soon(self) -> None:
        """Reload `projects.d` on the watcher's thread (safe from a signal handler)."""
        self.watcher.wake.set()

    def endpoints(self) -> list[Endpoint]:
        return [*self.forges.endpoints(), *self.deliveries.endpoints(), *self.runs.endpoints()]

    def start(self) -> None:
        self.sender.start()
        self.dispatcher.start()
        self.worker.start()
        self.scheduler.start()
        self.watcher.start()

    def stop(self) -> None:
        self.watcher.stop()
        self.scheduler.stop()
        self.worker.stop()
        self.dispatcher.stop()
        self.sender.stop()

    def secret_variables(self) -> set[str]:
        """The variables holding any project's secrets: their values reach no step's log."""
        return {name for p in self.projects.values() for name in p.secret_variables()}

    def secret_values(self) -> list[str]:
        """The values of those variables that are set: what no step's log may show."""
        values = (os.environ.get(name, "") for name in self.secret_variables())
        return [value for value in values if len(value) >= MIN_SECRET]


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


class ProjectWatcher(threading.Thread):
    """Reloads `projects.d` when a file in it is added, changed or removed (its mtimes are
    polled every `poll` seconds), or at once when woken (SIGHUP)."""

    def __init__(self, directory: Path, reload: Callable[[], None], poll: float = 1.0) -> None:
        super().__init__(name="projects-watch", daemon=True)
        self.directory, self.reload, self.poll = directory, reload, poll
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.seen = self.snapshot()

    def snapshot(self) -> dict[str, tuple[int, int, int]]:
        found: dict[str, tuple[int, int, int]] = {}
        for pattern in PROJECT_FILES:
            for file in self.directory.glob(pattern):
                try:
                    st = file.stat()
                except OSError:
                    continue  # removed meanwhile
                found[file.name] = (st.st_mtime_ns, st.st_size, st.st_ino)
        return found

    def run(self) -> None:
        while not self.stopping.is_set():
            asked = self.wake.wait(self.poll)
            self.wake.clear()
            if self.stopping.is_set():
                return
            now = self.snapshot()
            if asked or now != self.seen:
                self.seen = now
                try:
                    self.reload()
                except Exception:  # keep watching: the next change tries again
                    log.exception("reloading %s failed", self.directory)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        if self.is_alive():
            self.join(5)


def _by_file(problems: list[Problem]) -> dict[Path, list[Problem]]:
    found: dict[Path, list[Problem]] = {}
    for problem in problems:
        found.setdefault(problem.file, []).append(problem)
    return found
