"""Read-side queries: rows by key and the JSON-ready views the API serves."""

from __future__ import annotations

import base64
import json
from typing import Any

from otto.psm.errors import NotFound
from otto.psm.records import DEFAULT_BRANCH_DETAIL, Transition, iso
from otto.psm.states import OUTCOMES, SKIPPED, WAITING, Reason
from otto.psm.store.base import Row, Tx
from otto.redact import redact_url

MAX_PAGE = 500


def _found(row: Row | None, what: str) -> Row:
    if row is None:
        raise NotFound(f"no {what}")
    return row


def pipeline_row(tx: Tx, uuid: str) -> Row:
    return _found(tx.one("SELECT * FROM pipelines WHERE uuid = ?", uuid), f"pipeline {uuid}")


def batch_row(tx: Tx, pipeline: str, idx: int) -> Row:
    row = tx.one("SELECT * FROM batches WHERE pipeline = ? AND idx = ?", pipeline, idx)
    return _found(row, f"batch {idx} in pipeline {pipeline}")


def context_row(tx: Tx, uuid: str) -> Row:
    return _found(tx.one("SELECT * FROM contexts WHERE uuid = ?", uuid), f"context {uuid}")


def step_row(tx: Tx, context: str, uuid: str) -> Row:
    row = tx.one("SELECT * FROM steps WHERE uuid = ? AND context = ?", uuid, context)
    return _found(row, f"step {uuid} in context {context}")


def _outcome(state: str) -> str | None:
    return state if state in OUTCOMES else None


def _ended(state: str) -> bool:
    """Whether a context's state has a reason to show: an outcome, or Skipped."""
    return state in OUTCOMES or state == SKIPPED


def _waiting(context: Row) -> dict[str, Any] | None:
    """What a Waiting context asks (its gate, `enter` or `exit`: the input's message and
    parameters) and until when; None when it is not waiting."""
    if context["waiting_for"] is None:
        return None
    gate = json.loads(context["gate_input"])[context["waiting_for"]]
    return {
        "gate": context["waiting_for"],
        "message": gate["message"],
        "parameters": gate.get("parameters") or [],
        "timeout_at": iso(context["input_deadline"]),
    }


def pipeline(tx: Tx, uuid: str) -> dict[str, Any]:
    """The model and every state: pipeline, batches, contexts, steps."""
    run = pipeline_row(tx, uuid)
    batches = tx.all("SELECT * FROM batches WHERE pipeline = ? ORDER BY idx", uuid)
    contexts = tx.all("SELECT * FROM contexts WHERE pipeline = ? ORDER BY batch, position", uuid)
    steps = tx.all(
        "SELECT s.* FROM steps s JOIN contexts c ON c.uuid = s.context WHERE c.pipeline = ?"
        " ORDER BY s.position",
        uuid,
    )
    why, seen = _reasons(tx, uuid)
    names = {c["uuid"]: c["name"] for c in contexts}
    steps_of: dict[str, list[dict[str, Any]]] = {}
    for s in steps:
        steps_of.setdefault(s["context"], []).append(
            {
                "uuid": s["uuid"],
                "symbol": s["symbol"],
                "state": s["state"],
                "status": _outcome(s["state"]),
                "reason": why.get(s["uuid"]) if _outcome(s["state"]) else None,
                "exit_code": s["exit_code"],
                "started_at": iso(s["started_at"]),
                "finished_at": iso(s["finished_at"]),
            }
        )
    contexts_of: dict[int, list[dict[str, Any]]] = {}
    for c in contexts:
        contexts_of.setdefault(c["batch"], []).append(
            {
                "uuid": c["uuid"],
                "name": c["name"],
                "state": c["state"],
                "status": _outcome(c["state"]),
                "reason": why.get(c["uuid"]) if _ended(c["state"]) else None,
                "orchestrator": c["orchestrator"],
                "attempt": c["attempt"],
                "started_at": iso(c["started_at"]),
                "finished_at": iso(c["finished_at"]),
                "waiting": _waiting(c),
                "hook": _hook(c, names, seen),
                "steps": steps_of.get(c["uuid"], []),
            }
        )
    return {
        **_summary(run),
        "waiting": any(c["state"] == WAITING for c in contexts),
        "model": json.loads(run["model"]),
        "batches": [
            {
                "index": b["idx"],
                "mode": b["mode"],
                "state": b["state"],
                "status": b["status"],
                "hooks": any(c["hook"] for c in contexts_of.get(b["idx"], [])),
                "contexts": contexts_of.get(b["idx"], []),
            }
            for b in batches
        ],
    }


def _reasons(tx: Tx, pipeline: str) -> tuple[dict[str, str], dict[str, str | None]]:
    """Why each context and step of a run is in its state: its last transition's reason
    (`timeout`, `exit code 2`, `agent_lost`, …), by uuid; and, of each hook context
    skipped `not_triggered`, the outcome its trigger saw (None: its stage never ran)."""
    rows = tx.all(
        "SELECT id, reason, data FROM transitions WHERE seq IN (SELECT MAX(seq) FROM transitions"
        " WHERE pipeline = ? AND entity IN ('context', 'step') GROUP BY entity, id)",
        pipeline,
    )
    seen = {
        r["id"]: json.loads(r["data"] or "{}").get("outcome")
        for r in rows
        if r["reason"] == Reason.NOT_TRIGGERED
    }
    return {r["id"]: r["reason"] for r in rows if r["reason"]}, seen


def _hook(
    context: Row, names: dict[str, str], seen: dict[str, str | None]
) -> dict[str, Any] | None:
    """What a hook context reacts to (`on`, the stage context it is `of` and that stage's
    name; None: the pipeline) and, once it was not triggered, the `outcome` it saw; None
    when it is no hook."""
    if context["hook"] is None:
        return None
    hook = json.loads(context["hook"])
    of = hook.get("of")
    return {
        "on": hook["on"],
        "of": of,
        "of_name": names.get(of) if of else None,
        "outcome": seen.get(context["uuid"]),
    }


# Whether a run has a context Waiting at an approval gate (a column of a pipelines query).
_WAITING = (
    f"EXISTS (SELECT 1 FROM contexts c WHERE c.pipeline = pipelines.uuid AND c.state = '{WAITING}')"
)


def _summary(run: Row) -> dict[str, Any]:
    return {
        # keys(): `in` on a sqlite3.Row looks among its values
        **({"waiting": bool(run["waiting"])} if "waiting" in run.keys() else {}),  # noqa: SIM118
        "uuid": run["uuid"],
        "state": run["state"],
        "status": run["status"],
        "repo": redact_url(run["repo"]),
        "ref": run["ref"],
        "sha": run["sha"],
        "project": run["project"],
        "trigger": run["trigger"],
        "event": run["event"],
        "trigger_details": _shown_details(run["trigger_data"]),
        "message": run["message"],
        "abort_requested": bool(run["abort_requested"]),
        "abort_reason": run["abort_reason"],
        "abort_data": json.loads(run["abort_data"]) if run["abort_data"] else None,
        "rejected": _rejected(run),
        "created_at": iso(run["created_at"]),
        # When its last attempt began: its creation, or its last retry.
        "started_at": iso(run["retried_at"] or run["created_at"]),
        "updated_at": iso(run["updated_at"]),
        # Its logs and artifacts removed by the retention policy (otto.housekeeping).
        "logs_expired": run["logs_expired_at"] is not None,
    }


def _rejected(run: Row) -> dict[str, Any] | None:
    """Why a run was refused at creation: `{"reason": "config_error", "message": …}`."""
    if not run["rejected_reason"]:
        return None
    return {"reason": run["rejected_reason"], **json.loads(run["rejected_data"] or "{}")}


def pipelines(
    tx: Tx,
    state: str | None = None,
    repo: str | None = None,
    ref: str | None = None,
    project: str | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, filtered; `cursor` continues where the previous page ended. A `ref`
    without `refs/` is a branch or tag by its short name (`main`: `refs/heads/main`)."""
    where, params = [], []
    filters = {"state": state, "status": status, "repo": repo, "project": project}
    for column, value in filters.items():
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if ref is not None:
        refs = [ref] if ref.startswith("refs/") else [ref, f"refs/heads/{ref}", f"refs/tags/{ref}"]
        where.append(f"ref IN ({', '.join('?' for _ in refs)})")
        params += refs
    if cursor:
        created, uuid = decode_cursor(cursor)
        where.append("(created_at < ? OR (created_at = ? AND uuid < ?))")
        params += [created, created, uuid]
    limit = max(1, min(limit, MAX_PAGE))
    sql = f"SELECT *, {_WAITING} AS waiting FROM pipelines"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = tx.all(sql + " ORDER BY created_at DESC, uuid DESC LIMIT ?", *params, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    following = encode_cursor(rows[-1]["created_at"], rows[-1]["uuid"]) if more else None
    return [_summary(r) for r in rows], following


def latest_by_ref(tx: Tx, project: str) -> list[dict[str, Any]]:
    rows = tx.all(
        "SELECT p.* FROM pipelines p JOIN"
        " (SELECT ref, MAX(created_at) AS newest FROM pipelines WHERE project = ? GROUP BY ref) l"
        " ON p.ref = l.ref AND p.created_at = l.newest"
        " WHERE p.project = ? ORDER BY p.created_at DESC",
        project,
        project,
    )
    return [_summary(r) for r in rows]


def encode_cursor(created: float, uuid: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created, uuid]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        created, uuid = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return float(created), str(uuid)
    except (ValueError, TypeError) as exc:
        raise ValueError("cursor: not a cursor this server gave out") from exc


def transitions(tx: Tx, uuid: str) -> list[Transition]:
    pipeline_row(tx, uuid)
    rows = tx.all("SELECT * FROM transitions WHERE pipeline = ? ORDER BY seq", uuid)
    return [Transition.from_row(r) for r in rows]


def _shown_details(trigger_data: str | None) -> dict[str, Any]:
    details = json.loads(trigger_data) if trigger_data else {}
    return {k: v for k, v in details.items() if k != DEFAULT_BRANCH_DETAIL}
