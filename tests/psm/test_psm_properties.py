"""Property tests: random pipelines under random interleavings of executor reports.

Reports are duplicated, reordered, sent under stale or forged leases (a lease of
an attempt before a retry is genuinely stale), mixed with aborts, retries,
provisioning failures and lease expiries. A refused request
(Conflict, StaleLease, NotFound, IllegalTransition) is fine but must change
nothing; after every accepted one the structural invariants hold; at the end
the run is driven to completion and the whole log is checked.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psmkit import (
    REFUSED,
    check_log,
    check_pipeline,
    drive,
    expected_pipeline_status,
    finish,
    make_pipeline,
    snapshot,
)

from otto.psm import Conflict, Lease
from otto.status import Status

MODES = ["Linear", "Parallel", "Fanout"]
ORCHS = ["o1", "o2"]
EXIT_CODES = [0, 0, 1, 2, 3, 137]
KINDS = [
    "award",
    "award_all",
    "release",
    "claim",
    "step_started",
    "step_finished",
    "context_finished",
    "renew",
    "stale",
    "abort",
    "expire",
    "fail",
    "retry",
    "progress",
    "progress",
]

shapes = st.lists(
    st.tuples(st.sampled_from(MODES), st.lists(st.integers(0, 3), min_size=1, max_size=3)),
    min_size=1,
    max_size=3,
)
actions = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 2**16), st.integers(0, 2**16)),
    max_size=40,
)

PROPERTY_SETTINGS = settings(
    max_examples=int(os.environ.get("OTTO_PSM_EXAMPLES", "30")),  # more for a long local search
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def pick(items: list[Any], n: int) -> Any:
    return items[n % len(items)]


class Scenario:
    """One pipeline and everything a crowd of confused executors has seen of it."""

    def __init__(self, psm: Any, shape: list[tuple[str, list[int]]]) -> None:
        self.psm = psm
        self.model = make_pipeline(*shape)
        self.uuid = psm.create(self.model).uuid
        self.contexts = [c.uuid for c in self.model.contexts()]
        self.steps = {c.uuid: [s.uuid for s in c.steps] for c in self.model.contexts()}
        self.all_steps = [s for steps in self.steps.values() for s in steps]
        self.leases: list[Lease] = []
        self.accepted: list[str] = []

    def lease(self, n: int) -> Lease:
        if not self.leases:  # a lease nobody was given
            return Lease(self.uuid, pick(self.contexts, n), pick(ORCHS, n), 1, 0.0)
        return pick(self.leases, n)

    def step_for(self, lease: Lease, n: int) -> str:
        own = self.steps[lease.context]
        return pick(own, n) if own and n % 5 else pick(self.all_steps or [lease.context], n)

    def do(self, kind: str, a: int, b: int) -> None:
        psm = self.psm
        if kind == "award":
            psm.award(pick(self.contexts, a), pick(ORCHS, b))
        elif kind == "award_all":
            for ctx in psm.open_contexts():
                if ctx["pipeline"] == self.uuid:
                    psm.award(ctx["uuid"], pick(ORCHS, b))
        elif kind == "release":
            psm.release(pick(self.contexts, a), pick(ORCHS, b))
        elif kind == "claim":
            ctx = pick(self.contexts, a)
            orch = self.orchestrator(ctx) if b % 3 else pick(ORCHS, b)
            self.leases.append(psm.claim(ctx, orch or pick(ORCHS, b)))
        elif kind == "step_started":
            lease = self.lease(a)
            psm.step_started(lease, self.step_for(lease, b))
        elif kind == "step_finished":
            lease = self.lease(a)
            psm.step_finished(lease, self.step_for(lease, b), exit_code=pick(EXIT_CODES, b))
        elif kind == "context_finished":
            psm.context_finished(self.lease(a), pick(list(Status), b))
        elif kind == "renew":
            renewed = psm.renew(self.lease(a))
            self.leases.append(renewed)
        elif kind == "stale":
            lease = self.lease(a)
            forged = Lease(
                lease.pipeline,
                lease.context,
                lease.orchestrator,
                lease.epoch + (1 if b % 2 else -1),
                lease.expires_at,
            )
            if b % 3 == 0:
                psm.step_started(forged, self.step_for(forged, b))
            else:
                psm.context_finished(forged, pick(list(Status), b))
        elif kind == "abort":
            psm.abort(self.uuid, actor="user")
        elif kind == "expire":
            if self.leases:
                psm.expire_leases(now=self.lease(a).expires_at + (b % 3) * 0.001)
            else:
                psm.expire_leases()
        elif kind == "fail":
            psm.fail_context(pick(self.contexts, a), "provisioning_failed", pick(ORCHS, b))
        elif kind == "retry":
            psm.retry(self.uuid, actor="user")
        elif kind == "progress":
            self.progress(a)
        else:  # pragma: no cover
            raise AssertionError(kind)

    def orchestrator(self, ctx: str) -> str | None:
        row = self.psm.store.read(
            lambda tx: tx.one("SELECT orchestrator FROM contexts WHERE uuid = ?", ctx)
        )
        return row["orchestrator"]

    def progress(self, n: int) -> None:
        """Do one sensible thing, so that random runs get deep."""
        psm = self.psm
        view = psm.get(self.uuid)
        live = [b for b in view["batches"] if b["state"] not in ("Pending", "Complete", "NotRun")]
        if not live:
            raise Conflict("nothing to do")
        contexts = live[0]["contexts"]
        running = [c for c in contexts if c["state"] in ("Running", "Aborting")]
        if running and n % 2:
            finish(psm, pick(running, n)["uuid"], lambda step: pick(EXIT_CODES, n))
            return
        for ctx in contexts:
            if ctx["state"] == "Pending" and ctx["orchestrator"] is None:
                psm.award(ctx["uuid"], pick(ORCHS, n))
                return
        for ctx in contexts:
            if ctx["state"] == "Pending":
                self.leases.append(psm.claim(ctx["uuid"], ctx["orchestrator"]))
                return
        if running:
            finish(psm, pick(running, n)["uuid"], lambda step: pick(EXIT_CODES, n))
            return
        raise Conflict("nothing to do")


def play(psm: Any, shape: list[tuple[str, list[int]]], script: list[tuple[str, int, int]]) -> None:
    scenario = Scenario(psm, shape)
    check_pipeline(psm, scenario.uuid)
    for kind, a, b in script:
        before = snapshot(psm, scenario.uuid)
        try:
            scenario.do(kind, a, b)
        except REFUSED:
            assert snapshot(psm, scenario.uuid) == before, f"refused {kind} changed something"
        else:
            scenario.accepted.append(kind)
        check_pipeline(psm, scenario.uuid)
    view = drive(psm, scenario.uuid, lambda step: 0)  # every run can be finished
    view = check_pipeline(psm, scenario.uuid)
    assert view["state"] == "Complete"
    assert view["status"] == expected_pipeline_status(view).value
    if not view["abort_requested"]:
        statuses = [Status(b["status"]) for b in view["batches"] if b["status"]]
        assert view["status"] == max(statuses, key=lambda s: s.rank, default=Status.SUCCESS)
    check_log(psm)


@PROPERTY_SETTINGS
@given(shape=shapes, script=actions)
def test_random_interleavings_keep_the_invariants(
    psm: Any, shape: list[tuple[str, list[int]]], script: list[tuple[str, int, int]]
) -> None:
    play(psm, shape, script)


@PROPERTY_SETTINGS
@given(
    shape=shapes,
    script=st.lists(
        st.tuples(
            st.sampled_from(
                ["progress", "progress", "progress", "step_finished", "stale", "retry", "abort"]
            ),
            st.integers(0, 2**16),
            st.integers(0, 2**16),
        ),
        min_size=5,
        max_size=40,
    ),
)
def test_mostly_sensible_runs_keep_the_invariants(
    psm: Any, shape: list[tuple[str, list[int]]], script: list[tuple[str, int, int]]
) -> None:
    play(psm, shape, script)
