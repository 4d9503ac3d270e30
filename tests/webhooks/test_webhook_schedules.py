"""Project schedules: validated at load, stored deadlines claimed once (SQLite and
PostgreSQL), and a real `otto server` firing them once across restarts, late when missed."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hookkit import Repo, git_daemon, make_repo

from otto.psm import PipelineStateMachine
from otto.webhooks.projects import Schedule, load_projects
from otto.webhooks.schedules import Deadline, Deadlines, next_due
from serverkit import free_port, running_server, start_server, stop_server, wait_for

OTTOFILE = "pipeline {\n  stage {\n    name = 'build'\n    steps { sh 'true' }\n  }\n}\n"
LEAP_DAY = "0 3 29 2 *"  # daily would be due now and then while the tests run: not this


def test_cron_and_time_zone_are_checked_at_load_at_their_line(tmp_path: Path) -> None:
    (tmp_path / "app.yml").write_text(
        "source: {url: u}\nsecret_env: S\nschedules:\n"
        "  - cron: '0 3 * * *'\n"
        "  - cron: '61 3 * * *'\n"
        "    ref: main\n"
        "  - cron: '0 3 * * *'\n"
        "    timezone: Mars/Olympus\n"
    )
    projects, problems = load_projects(tmp_path)
    assert projects == []
    assert [p.at_line() for p in problems] == [
        "line 5: schedules.1.cron: not a cron expression: '61 3 * * *' (e.g. '0 3 * * *')",
        "line 8: schedules.2.timezone: unknown time zone 'Mars/Olympus'"
        " (e.g. 'UTC', 'Europe/Paris')",
    ]


def test_due_times_follow_the_time_zone() -> None:
    noon_utc = datetime(2026, 7, 1, 12, 0, tzinfo=UTC).timestamp()
    paris = Schedule(cron="0 3 * * *", timezone="Europe/Paris")  # 01:00 UTC in summer
    assert next_due(paris, noon_utc) == datetime(2026, 7, 2, 1, 0, tzinfo=UTC).timestamp()
    assert paris.key() != Schedule(cron="0 3 * * *").key()
    assert paris.key() == Schedule(cron="0 3 * * *", timezone="Europe/Paris").key()


def test_a_deadline_is_claimed_once_and_forgotten_with_its_schedule(
    psm: PipelineStateMachine, tmp_path: Path
) -> None:
    (tmp_path / "app.yml").write_text(
        "source: {url: u}\nsecret_env: S\nschedules: [{cron: '0 3 * * *'}]\n"
    )
    (project,), _ = load_projects(tmp_path)
    one, other = Deadlines(psm.store), Deadlines(psm.store)  # two replicas, one database
    now = datetime(2026, 7, 1, 12, 0, tzinfo=UTC).timestamp()
    one.plan([project], now)
    other.plan([project], now + 3600)  # planned already: kept as it is
    tomorrow = datetime(2026, 7, 2, 3, 0, tzinfo=UTC).timestamp()
    assert one.earliest() == tomorrow and one.due(now) == []
    (due,) = one.due(tomorrow)
    assert due == Deadline("app", project.schedules[0].key(), tomorrow)
    following = tomorrow + 86400
    assert one.claim(due, following, tomorrow) is True
    assert other.claim(due, following, tomorrow) is False  # fired already: never twice
    assert other.earliest() == following
    one.plan([], now)
    assert one.earliest() is None


@dataclass
class Scheduled:
    home: Path
    repo: Repo
    sha: str


@pytest.fixture
def scheduled(tmp_path: Path) -> Iterator[Scheduled]:
    served = tmp_path / "served"
    with git_daemon(served) as base:
        repo = make_repo(served, base, "acme/app.git", tmp_path)
        sha = repo.commit({"Ottofile": OTTOFILE})
        repo.push("main")
        home = tmp_path / "home"
        (home / "projects.d").mkdir(parents=True)
        yield Scheduled(home, repo, sha)


def write_project(s: Scheduled, cron: str) -> None:
    (s.home / "projects.d" / "app.yml").write_text(
        f"source:\n  url: {s.repo.url}\nsecret_env: APP_HOOK_SECRET\n"
        f"schedules:\n  - cron: '{cron}'\n    ref: main\n    timezone: UTC\n"
    )


def deadlines(home: Path) -> list[tuple[str, float, float | None]]:
    with sqlite3.connect(home / "otto.db") as db:
        rows = db.execute("SELECT cron, due_at, fired_at FROM schedule_deadlines").fetchall()
    return [(cron, due, fired) for cron, due, fired in rows]


def scheduled_runs(client: httpx.Client) -> list[dict[str, Any]]:
    runs = client.get("/v1/pipelines").json()["pipelines"]
    return [r for r in runs if r["event"] == "schedule"]


def test_a_schedule_fires_once_at_its_due_time_across_a_restart(scheduled: Scheduled) -> None:
    # Every minute at that second: 36-40 s from now, time enough to start (at most 20 s)
    # and stop (at most 10 s) a server before it is due even on a busy machine.
    second = (int(time.time()) + 40) % 60
    write_project(scheduled, f"* * * * * {second}")
    env = {"APP_HOOK_SECRET": "s3cret"}
    with running_server(scheduled.home, **env):
        ((_, due, fired),) = wait_for(lambda: deadlines(scheduled.home), what="a deadline")
    assert fired is None and time.time() < due  # stopped before it was due
    server = start_server(scheduled.home, free_port(), **env)
    try:
        with server.client() as client:
            (run,) = wait_for(lambda: scheduled_runs(client), due - time.time() + 10, "the run")
            assert time.time() >= due
            time.sleep(2)  # time for a (wrong) second run of the same due time
            assert [r["uuid"] for r in scheduled_runs(client)] == [run["uuid"]]
            shown = client.get(f"/v1/pipelines/{run['uuid']}").json()
    finally:
        stop_server(server)
    assert (shown["trigger"], shown["ref"], shown["sha"]) == (
        "schedule",
        "refs/heads/main",
        scheduled.sha,
    )
    fired_due = datetime.fromtimestamp(due, UTC).isoformat()
    assert shown["trigger_details"] == {
        "cron": f"* * * * * {second}",
        "due": fired_due,
        "late": False,
    }
    ((_, following, fired),) = deadlines(scheduled.home)
    assert following == due + 60 and fired is not None and fired >= due


def test_a_missed_due_time_fires_once_late_and_a_changed_schedule_is_replanned(
    scheduled: Scheduled,
) -> None:
    write_project(scheduled, LEAP_DAY)
    env = {"APP_HOOK_SECRET": "s3cret"}
    with running_server(scheduled.home, **env):
        wait_for(lambda: deadlines(scheduled.home), what="a deadline")
    missed = datetime(2016, 2, 29, 3, 0, tzinfo=UTC).timestamp()  # missed 3 times since
    with sqlite3.connect(scheduled.home / "otto.db") as db:
        db.execute("UPDATE schedule_deadlines SET due_at = ?", (missed,))
    with running_server(scheduled.home, **env) as server, server.client() as client:
        (run,) = wait_for(lambda: scheduled_runs(client), what="the late run")
        shown = client.get(f"/v1/pipelines/{run['uuid']}").json()
        assert shown["trigger_details"] == {
            "cron": LEAP_DAY,
            "due": "2016-02-29T03:00:00+00:00",
            "late": True,
        }
        ((_, following, _),) = deadlines(scheduled.home)
        assert following > time.time() and datetime.fromtimestamp(following, UTC).hour == 3
        time.sleep(1.5)
        assert len(scheduled_runs(client)) == 1  # once, not once per missed due time

        write_project(scheduled, "30 4 * * *")  # the watcher reads it again: re-planned
        wait_for(lambda: [d[0] for d in deadlines(scheduled.home)] == ["30 4 * * *"], 10)
        (scheduled.home / "projects.d" / "app.yml").write_text(
            f"source:\n  url: {scheduled.repo.url}\nsecret_env: APP_HOOK_SECRET\n"
        )
        wait_for(lambda: deadlines(scheduled.home) == [], 10, "the schedule forgotten")


def test_a_due_time_claimed_before_a_crash_starts_its_run_exactly_once(
    scheduled: Scheduled,
) -> None:
    write_project(scheduled, LEAP_DAY)
    env = {"APP_HOOK_SECRET": "s3cret"}
    with running_server(scheduled.home, **env):
        wait_for(lambda: deadlines(scheduled.home), what="a deadline")
    claimed = datetime(2024, 2, 29, 3, 0, tzinfo=UTC).timestamp()

    def crash_after_the_claim() -> None:  # the deadline moved on; its run is not known
        with sqlite3.connect(scheduled.home / "otto.db") as db:
            db.execute("UPDATE schedule_deadlines SET firing_due = ?", (claimed,))

    crash_after_the_claim()  # … before the run was created
    with running_server(scheduled.home, **env) as server, server.client() as client:
        (run,) = wait_for(lambda: scheduled_runs(client), what="the claimed due time's run")
        assert run["trigger_details"]["due"] == "2024-02-29T03:00:00+00:00"
        wait_for(lambda: _firing(scheduled.home) == [None], what="the due time done")
    crash_after_the_claim()  # … after the run was created: not created again
    with running_server(scheduled.home, **env) as server, server.client() as client:
        wait_for(lambda: _firing(scheduled.home) == [None], what="the due time done")
        assert [r["uuid"] for r in scheduled_runs(client)] == [run["uuid"]]


def _firing(home: Path) -> list[float | None]:
    with sqlite3.connect(home / "otto.db") as db:
        return [row[0] for row in db.execute("SELECT firing_due FROM schedule_deadlines")]
