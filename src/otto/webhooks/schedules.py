"""Project schedules as stored deadlines: each schedule's next due time is a row of
`schedule_deadlines`, so a restart neither fires one twice nor forgets one.

The scheduler thread sleeps until the earliest due time (or until `projects.d` is read
again), then fires each due schedule exactly once: it claims the row with a guarded
UPDATE that moves the deadline to the schedule's next time after now and notes the
claimed time as `firing_due` (one transaction; a second replica's UPDATE finds the old
due time gone and fires nothing), then starts the run (`otto.webhooks.manual.Starter`)
with an idempotency key of the project, schedule and due time, recorded as `schedule`
with details {cron, due, late}, and clears `firing_due`. A crash between the claim and
the clearing leaves `firing_due`: the next pass starts that run again under the same
key, which creates it if it is missing and answers the existing one if not. A
repository that does not answer is tried again every `RETRY_AFTER`; a ref it does not
have (logged) gives up that due time.
A due time missed while the server was down (by more than `LATE_AFTER`) fires once at
start, `late`, however many times were missed. A schedule added to a project is planned
from now; one changed or removed is forgotten (a changed one is a new schedule).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from croniter import croniter

from otto.psm.store.base import Store, Tx
from otto.serverlog import fields
from otto.webhooks.manual import RefNotFound, Starter
from otto.webhooks.mirror import Unreachable
from otto.webhooks.projects import Project, Schedule

log = logging.getLogger("otto.webhooks")

LATE_AFTER = 60.0  # seconds past its due time a fired schedule is noted `late`
LONGEST_SLEEP = 30.0  # the scheduler looks again at least this often (other replicas' plans)
RETRY_AFTER = 5.0  # seconds before a run the repository could not start is tried again


def next_due(schedule: Schedule, after: float) -> float:
    """The first due time of `schedule` strictly after `after` (seconds since the epoch)."""
    start = datetime.fromtimestamp(after, ZoneInfo(schedule.timezone))
    return float(croniter(schedule.cron, start).get_next(float))


@dataclass(frozen=True)
class Deadline:
    project: str
    schedule: str  # `Schedule.key()`
    due_at: float


class Deadlines:
    """The `schedule_deadlines` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def plan(self, projects: list[Project], now: float) -> None:
        """A deadline for every schedule that has none (its next time after `now`); none
        for a schedule no project has any more."""
        wanted = {(p.name, s.key()): s for p in projects for s in p.schedules}

        def planned(tx: Tx) -> set[tuple[str, str]]:
            rows = tx.all("SELECT project, schedule FROM schedule_deadlines")
            return {(row["project"], row["schedule"]) for row in rows}

        if self.store.read(planned) == wanted.keys():
            return  # as planned: no write (a full disk, or another replica, may refuse it)

        def work(tx: Tx) -> None:
            known = planned(tx)
            for project, key in known - wanted.keys():
                tx.run(
                    "DELETE FROM schedule_deadlines WHERE project = ? AND schedule = ?",
                    project,
                    key,
                )
            for (project, key), schedule in wanted.items():
                if (project, key) not in known:
                    tx.run(
                        "INSERT INTO schedule_deadlines (project, schedule, cron, due_at)"
                        " VALUES (?, ?, ?, ?) ON CONFLICT (project, schedule) DO NOTHING",
                        *(project, key, schedule.cron, next_due(schedule, now)),
                    )

        self.store.write(work)

    def due(self, now: float) -> list[Deadline]:
        rows = self.store.read(
            lambda tx: tx.all(
                "SELECT project, schedule, due_at FROM schedule_deadlines WHERE due_at <= ?"
                " ORDER BY due_at",
                now,
            )
        )
        return [Deadline(r["project"], r["schedule"], r["due_at"]) for r in rows]

    def earliest(self) -> float | None:
        row = self.store.read(
            lambda tx: tx.one("SELECT MIN(due_at) AS due FROM schedule_deadlines")
        )
        return None if row is None or row["due"] is None else float(row["due"])

    def claim(self, deadline: Deadline, following: float, now: float) -> bool:
        """Mark `deadline` firing and move it to `following`, if no one else did first."""
        return bool(
            self.store.write(
                lambda tx: tx.run(
                    "UPDATE schedule_deadlines SET due_at = ?, fired_at = ?, firing_due = ?"
                    " WHERE project = ? AND schedule = ? AND due_at = ?",
                    *(following, now, deadline.due_at),
                    *(deadline.project, deadline.schedule, deadline.due_at),
                )
            )
        )

    def firing(self) -> list[Deadline]:
        """Due times claimed whose runs were not seen started (a crash, an unreachable
        repository)."""
        rows = self.store.read(
            lambda tx: tx.all(
                "SELECT project, schedule, firing_due FROM schedule_deadlines"
                " WHERE firing_due IS NOT NULL ORDER BY firing_due"
            )
        )
        return [Deadline(r["project"], r["schedule"], r["firing_due"]) for r in rows]

    def fired(self, deadline: Deadline) -> None:
        """`deadline`'s run exists (or never can): it is done."""
        self.store.write(
            lambda tx: tx.run(
                "UPDATE schedule_deadlines SET firing_due = NULL"
                " WHERE project = ? AND schedule = ? AND firing_due = ?",
                deadline.project,
                deadline.schedule,
                deadline.due_at,
            )
        )


class Scheduler(threading.Thread):
    def __init__(
        self,
        deadlines: Deadlines,
        starter: Starter,
        projects: Callable[[], list[Project]],
        wake: threading.Event,
    ) -> None:
        super().__init__(name="schedules", daemon=True)
        self.deadlines, self.starter, self.projects = deadlines, starter, projects
        self.wake = wake  # set when `projects.d` was read again
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                self.deadlines.plan(self.projects(), time.time())
                unstarted = [*self.deadlines.firing()]
                for deadline in self.deadlines.due(time.time()):
                    if self.fire(deadline):
                        unstarted.append(deadline)
                for deadline in unstarted:
                    if self.stopping.is_set():
                        return
                    self.start_run(deadline)
                sleep = self._until_next()
            except Exception:  # keep serving: the deadline stays and is tried again
                log.exception("firing schedules failed")
                sleep = 5.0
            self.wake.wait(sleep)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        if self.is_alive():
            self.join(10)

    def _until_next(self) -> float:
        if self.deadlines.firing():
            return RETRY_AFTER
        earliest = self.deadlines.earliest()
        if earliest is None:
            return LONGEST_SLEEP
        return min(max(earliest - time.time(), 0.0), LONGEST_SLEEP)

    def _schedule(self, deadline: Deadline) -> tuple[Project, Schedule] | None:
        project = next((p for p in self.projects() if p.name == deadline.project), None)
        schedules = project.schedules if project else []
        schedule = next((s for s in schedules if s.key() == deadline.schedule), None)
        return None if project is None or schedule is None else (project, schedule)

    def fire(self, deadline: Deadline) -> bool:
        """Claim `deadline` (its run is to start), unless another replica did already."""
        found = self._schedule(deadline)
        if found is None:
            return False  # gone meanwhile: the next plan forgets it
        now = time.time()
        return self.deadlines.claim(deadline, next_due(found[1], now), now)

    def start_run(self, deadline: Deadline) -> None:
        """The run of a claimed due time: created once, however often this is called."""
        found = self._schedule(deadline)
        if found is None:
            self.deadlines.fired(deadline)
            return
        project, schedule = found
        due = datetime.fromtimestamp(deadline.due_at, ZoneInfo(schedule.timezone))
        late = time.time() - deadline.due_at > LATE_AFTER
        details = {"cron": schedule.cron, "due": due.isoformat(), "late": late}
        key = f"schedule:{project.name}:{schedule.key()}:{deadline.due_at!r}"
        try:
            started = self.starter.start(
                project, event="schedule", ref=schedule.ref, details=details, idempotency=key
            )
        except Unreachable as exc:  # still firing: tried again
            said = fields(project=project.name, **details, error=str(exc))
            log.warning("scheduled run not started yet", extra=said)
            return
        except RefNotFound as exc:
            log.error(
                "scheduled run not started",
                extra=fields(project=project.name, **details, error=str(exc)),
            )
        else:
            said = fields(project=project.name, **details, run=started.uuid)
            log.info("scheduled run started", extra=said)
        self.deadlines.fired(deadline)
