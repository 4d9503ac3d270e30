"""The one way state changes: check the table, update the row, append to the log.

Both happen in the caller's transaction, so a state and the transition that
produced it are committed together or not at all.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from otto.psm.records import Conflict, Transition
from otto.psm.states import OUTCOMES, Entity, check
from otto.psm.store.base import Tx

# Each entity's table and the columns that identify a row of it.
_ROWS = {
    Entity.PIPELINE: ("pipelines", ("uuid",)),
    Entity.BATCH: ("batches", ("pipeline", "idx")),
    Entity.CONTEXT: ("contexts", ("uuid",)),
    Entity.STEP: ("steps", ("uuid",)),
}

_COLUMNS = "seq, pipeline, entity, id, from_state, to_state, status, reason, actor, at, data"
_INSERT = f"INSERT INTO transitions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_SELECT = (
    f"INSERT INTO transitions ({_COLUMNS}) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?::double precision, ?"
)


@dataclass(frozen=True)
class Cause:
    """Who caused a change and why; every transition records it."""

    actor: str
    reason: str | None = None
    data: dict[str, Any] | None = None  # carried by every transition it causes


def move(
    tx: Tx,
    pipeline: str,
    entity: Entity,
    ident: str,
    current: str,
    wanted: str,
    cause: Cause,
    status: str | None = None,
    data: dict[str, Any] | None = None,
    columns: dict[str, Any] | None = None,
    guard: tuple[str, tuple[Any, ...]] | None = None,
) -> Transition:
    """Move one entity from `current` to `wanted` and record the transition.

    `columns` are further columns of the entity's row to set in the same update;
    `guard` (SQL, params) is a further condition the update must meet, else Conflict.
    """
    check(entity, ident, current, wanted, cause.reason)
    now = time.time()
    table, keys = _ROWS[entity]
    sets = {"state": wanted, **(columns or {})}
    if entity in (Entity.PIPELINE, Entity.BATCH):
        sets["status"] = status
    if entity is Entity.PIPELINE:
        sets["updated_at"] = now
    key_values = (pipeline, int(ident)) if entity is Entity.BATCH else (ident,)
    update = f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in sets)} WHERE " + " AND ".join(
        f"{k} = ?" for k in (*keys, "state")
    )
    where: tuple[Any, ...] = (*key_values, current)
    if guard is not None:
        update += f" AND {guard[0]}"
        where += guard[1]
    seq = tx.next_seq()
    outcome = status if status is not None else (wanted if wanted in OUTCOMES else None)
    data = data if data is not None else cause.data
    record = Transition(
        seq, pipeline, entity.value, ident, current, wanted, outcome, cause.reason, cause.actor,
        now, data,
    )  # fmt: skip
    row = _log_row(record)
    if tx.dialect == "postgres":
        # One round trip: the log row is written only if the guarded update took.
        changed = tx.run(
            f"WITH moved AS ({update} RETURNING 1) {_INSERT_SELECT} FROM moved",
            *sets.values(),
            *where,
            *row,
        )
    else:
        changed = tx.run(update, *sets.values(), *where)
        if changed == 1:
            tx.run(_INSERT, *row)
    if changed != 1:
        raise Conflict(f"{entity} {ident} is no longer {current}")
    tx.published.append(record)  # type: ignore[attr-defined]
    return record


def record_creation(tx: Tx, pipeline: str, cause: Cause, data: dict[str, Any]) -> Transition:
    """The first entry of a pipeline's history: it came to be, Pending."""
    record = Transition(
        tx.next_seq(), pipeline, Entity.PIPELINE.value, pipeline, None, "Pending", None,
        cause.reason, cause.actor, time.time(), data,
    )  # fmt: skip
    tx.run(_INSERT, *_log_row(record))
    tx.published.append(record)  # type: ignore[attr-defined]
    return record


def _log_row(t: Transition) -> tuple[Any, ...]:
    return (
        t.seq, t.pipeline, t.entity, t.id, t.from_state, t.to_state, t.status, t.reason,
        t.actor, t.at, json.dumps(t.data) if t.data else None,
    )  # fmt: skip
