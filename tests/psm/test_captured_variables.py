"""Variables a context's steps captured, reported with its outcome, reach the work orders
of later contexts as `VAR_<name>`, on both backends; a late report records nothing."""

from __future__ import annotations

from typing import Any

import pytest
from psmkit import ORCH, contexts, make_pipeline

from otto.psm import Conflict
from otto.status import Status


def finish(psm: Any, ctx: dict[str, Any], variables: dict[str, str] | None) -> None:
    psm.award(ctx["uuid"], ORCH)
    lease = psm.claim(ctx["uuid"], ORCH)
    psm.context_finished(lease, Status.SUCCESS, variables=variables)


def test_captured_variables_reach_later_work_orders(psm: Any) -> None:
    uuid = psm.create(make_pipeline(("Linear", [0, 0, 0, 0]))).uuid
    first, second, third, fourth = contexts(psm, uuid)
    finish(psm, first, {"VERSION": "1.2", "NOTES": "a\nb"})
    finish(psm, second, None)
    finish(psm, third, {"VERSION": "2.0"})
    psm.award(fourth["uuid"], ORCH)
    order = psm.claim_work(fourth["uuid"], ORCH)
    captured = {k: v for k, v in order.variables.items() if k.startswith("VAR_")}
    assert captured == {"VAR_VERSION": "2.0", "VAR_NOTES": "a\nb"}
    assert order.to_dict()["variables"]["VAR_VERSION"] == "2.0"


def test_other_runs_do_not_see_them_and_a_stale_report_records_nothing(psm: Any) -> None:
    one = psm.create(make_pipeline(("Linear", [0, 0]))).uuid
    other = psm.create(make_pipeline(("Linear", [0]))).uuid
    first, second = contexts(psm, one)
    psm.award(first["uuid"], ORCH)
    lease = psm.claim(first["uuid"], ORCH)
    psm.context_finished(lease, Status.SUCCESS, variables={"SEEN": "yes"})
    with pytest.raises(Conflict):  # reported again: the context has ended
        psm.context_finished(lease, Status.SUCCESS, variables={"SEEN": "no", "LATE": "1"})
    (lone,) = contexts(psm, other)
    psm.award(lone["uuid"], ORCH)
    assert not any(k.startswith("VAR_") for k in psm.claim_work(lone["uuid"], ORCH).variables)
    psm.award(second["uuid"], ORCH)
    variables = psm.claim_work(second["uuid"], ORCH).variables
    assert {k: v for k, v in variables.items() if k.startswith("VAR_")} == {"VAR_SEEN": "yes"}
