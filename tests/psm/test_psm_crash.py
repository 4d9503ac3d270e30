"""Crash safety at the PSM level: kill -9 a process mid-run, reopen.

A child process (crash_child.py) creates 50 pipelines and drives them from
4 threads; it is killed with SIGKILL while group commits are in flight. The
store is then reopened here: everything the child was told is durable must
be there, the log must be whole and gap-free, the states must be those its
last transitions produced, leases must have survived, and the runs must
carry on to the end.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from psmkit import check_log, check_pipeline, context_row, drive

from otto.psm import Lease
from otto.status import Status

HERE = Path(__file__).parent
PIPELINES = 50
KILL_AFTER_ACTS = 400


def run_child_and_kill(store_url: str) -> tuple[list[str], dict[str, Lease], int]:
    """Start the child, SIGKILL it mid-run; return what it reported as committed."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    src = str(HERE.parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    child = subprocess.Popen(
        [sys.executable, str(HERE / "crash_child.py"), store_url, str(PIPELINES), "4"],
        cwd=HERE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    created: list[str] = []
    leases: dict[str, Lease] = {}
    acts = 0
    deadline = time.monotonic() + 60
    try:
        assert child.stdout is not None
        while acts < KILL_AFTER_ACTS:
            assert time.monotonic() < deadline, "the child made too little progress"
            ready, _, _ = select.select([child.stdout], [], [], 1.0)
            if not ready:
                continue
            line = child.stdout.readline()
            if not line:
                raise AssertionError(f"the child ended early: {child.stderr.read()}")  # type: ignore[union-attr]
            word, *rest = line.split()
            if word == "created":
                created.append(rest[0])
            elif word == "lease":
                pipeline, ctx, orch, epoch, expires = rest
                leases[ctx] = Lease(pipeline, ctx, orch, int(epoch), float(expires))
            elif word == "act":
                acts = int(rest[0])
            elif word == "done":
                raise AssertionError("the child finished before it was killed")
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
        child.stdout.close()  # type: ignore[union-attr]
        child.stderr.close()  # type: ignore[union-attr]
    assert child.returncode == -signal.SIGKILL
    return created, leases, acts


def test_kill_9_mid_run_then_carry_on(open_psm: Any, store_url: str) -> None:
    created, leases, acts = run_child_and_kill(store_url)
    assert len(created) == PIPELINES and acts >= KILL_AFTER_ACTS

    psm = open_psm(lease_seconds=3600)
    # Every pipeline is there; the log is whole, gap-free, chained, and replaying it
    # gives exactly the stored states (each entity is in the state of its last transition).
    log = check_log(psm)
    assert {t["pipeline"] for t in log} == set(created)
    assert psm.events.last_seq == log[-1]["seq"]
    listed, _ = psm.list(repo="crash", limit=500)
    assert {p["uuid"] for p in listed} == set(created)
    views = {uuid: check_pipeline(psm, uuid) for uuid in created}
    running = [
        c
        for view in views.values()
        for b in view["batches"]
        for c in b["contexts"]
        if c["state"] in ("Running", "Aborting")
    ]
    assert sum(v["state"] == "Running" for v in views.values()) > 0, "killed too late"

    # Leases survived: each running context still has the epoch and the deadline it was
    # given (a lease whose line the kill swallowed is read back from the store).
    for ctx in running:
        row = context_row(psm, ctx["uuid"])
        assert row["lease_epoch"] >= 1 and row["lease_expires"] is not None
        if ctx["uuid"] in leases:
            lease = leases[ctx["uuid"]]
            assert (row["lease_epoch"], row["lease_expires"]) == (lease.epoch, lease.expires_at)
    if running:
        deadlines = [context_row(psm, c["uuid"])["lease_expires"] for c in running]
        assert psm.next_deadline() == min(deadlines)

    # Half of the running contexts' agents come back and report under their old lease;
    # the other half are lost, and their deadlines fire after the restart.
    back = [c for i, c in enumerate(running) if i % 2 == 0 and c["uuid"] in leases]
    lost = [c for c in running if c not in back]
    for ctx in back:
        lease = leases[ctx["uuid"]]
        # Read now: an earlier report may have failed a Fanout sibling of this one.
        state = context_row(psm, ctx["uuid"])["state"]
        renewed = psm.renew(lease)
        assert renewed.epoch == lease.epoch and renewed.aborting == (state == "Aborting")
        if context_row(psm, ctx["uuid"])["state"] in ("Running", "Aborting"):
            psm.context_finished(lease, Status.ABORTED if renewed.aborting else Status.SUCCESS)
    latest = max(
        (context_row(psm, c["uuid"])["lease_expires"] or 0 for c in lost),
        default=time.time(),
    )
    stopping = {c["uuid"] for c in lost if context_row(psm, c["uuid"])["state"] == "Aborting"}
    assert psm.expire_leases(now=latest) == len(lost)
    for ctx in lost:
        row = context_row(psm, ctx["uuid"])
        # Losing a context that was being aborted is no new failure: it ends Aborted (or
        # Failed, when a step of it had failed: a context is the worst of its steps).
        # A Fanout sibling of one lost in this same pass is being aborted by then, too.
        if ctx["uuid"] in stopping:
            assert row["state"] in ("Aborted", "Failed")
        else:  # Pending: lost, and retried at once (its stage's default `retry_on`)
            assert row["state"] in ("Error", "Aborted", "Failed", "Pending")
            assert row["state"] != "Pending" or row["attempt"] == 1

    # And every run carries on to its end.
    for uuid in created:
        assert drive(psm, uuid)["state"] == "Complete"
        check_pipeline(psm, uuid)
    check_log(psm)
    assert psm.next_deadline() is None
