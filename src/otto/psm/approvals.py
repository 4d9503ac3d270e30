"""Approval gates: a person's answer to a Waiting context's input, and the inputs nobody
answered in time.

A context with an input waits (`Waiting`) holding nothing: no orchestrator, agent,
lease or process. Approving it at its enter gate lets it be auctioned; at its exit gate
it ends Success. Rejecting it ends it Failed (`rejected`). Its gate's timeout is a
stored deadline (`contexts.input_deadline`), swept with the leases
(`otto.psm.executor.expire_inputs`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from otto.psm import rules, views
from otto.psm.errors import Conflict, NotFound
from otto.psm.executor import ending
from otto.psm.ledger import apply
from otto.psm.records import Cause
from otto.psm.states import WAITING, Reason
from otto.psm.store import queries
from otto.psm.store.base import Row, Store, Tx


class MissingParameters(Exception):
    """An approval without a value for every parameter its input asks for."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"the input asks for {', '.join(names)}")
        self.names = names


@dataclass(frozen=True)
class Answer:
    """A person's answer: who (`by`), why (`comment`), the values of the input's
    parameters (`params`, approvals only)."""

    approved: bool
    by: str = "api"
    comment: str | None = None
    params: dict[str, str] = field(default_factory=dict)


class Approvals:
    """The PSM's calls on approval gates (a part of `PipelineStateMachine`)."""

    store: Store

    def answer(self, pipeline: str, context: str, answer: Answer) -> str:
        """Approve or reject a Waiting context of `pipeline` (`context`: its uuid or stage
        name); its uuid. NotFound, Conflict (not Waiting), MissingParameters."""

        def work(tx: Tx) -> str:
            ctx = waiting_context(tx, pipeline, context)
            now = time.time()
            asked = _asked(ctx)
            if answer.approved:
                missing = [name for name in asked if name not in answer.params]
                if missing:
                    raise MissingParameters(missing)
                values = {name: answer.params[name] for name in asked}
                if values:
                    queries.capture_variables(tx, pipeline, ctx["uuid"], values)
            reason = Reason.APPROVED if answer.approved else Reason.REJECTED
            cause = Cause(answer.by, reason, _record(answer, asked, now))
            moves = ending(tx, pipeline, ctx["uuid"], lambda run: rules.answer(
                run, ctx["uuid"], answer.approved, ctx["waiting_for"], cause, now))  # fmt: skip
            apply(tx, pipeline, moves)
            return str(ctx["uuid"])

        return self.store.write(work)


def waiting_context(tx: Tx, pipeline: str, context: str) -> Row:
    """The Waiting context of `pipeline` named by uuid or stage name (NotFound: none such;
    Conflict naming its state: not Waiting)."""
    views.pipeline_row(tx, pipeline)
    rows = tx.all(
        "SELECT * FROM contexts WHERE pipeline = ? AND (uuid = ? OR name = ?)"
        " ORDER BY batch, position",
        pipeline,
        context,
        context,
    )
    if not rows:
        raise NotFound(f"no context {context} in pipeline {pipeline}")
    row = next((r for r in rows if r["state"] == WAITING), rows[0])
    if row["state"] != WAITING:
        raise Conflict(f"context {context} is {row['state']}, not {WAITING}", row["state"])
    return row


def _asked(ctx: Row) -> list[str]:
    gate: dict[str, Any] = json.loads(ctx["gate_input"])[ctx["waiting_for"]]
    return list(gate.get("parameters") or [])


def _record(answer: Answer, asked: list[str], now: float) -> dict[str, Any]:
    """What the transition keeps of an answer: who, when, the comment, the parameters."""
    data: dict[str, Any] = {"by": answer.by, "at": now}
    if answer.comment:
        data["comment"] = answer.comment
    if answer.approved and asked:
        data["params"] = {name: answer.params[name] for name in asked}
    return data
