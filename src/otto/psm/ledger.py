"""The one way state changes: check the table, update the row, append to the log.

Both happen in the caller's transaction, so a state and the transition that
produced it are committed together or not at all.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from functools import cache
from typing import TYPE_CHECKING, Any

from otto.psm.errors import Conflict
from otto.psm.records import Cause, Transition
from otto.psm.states import OUTCOMES, Entity, check
from otto.psm.store.base import Tx

if TYPE_CHECKING:
    from otto.psm.rules import Move

__all__ = ["Cause", "apply", "move", "record_creation"]

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
    sets = {"state": wanted, **(columns or {})}
    if entity in (Entity.PIPELINE, Entity.BATCH):
        sets["status"] = status
    if entity is Entity.PIPELINE:
        sets["updated_at"] = now
    key_values = (pipeline, int(ident)) if entity is Entity.BATCH else (ident,)
    where: tuple[Any, ...] = (*key_values, current)
    if guard is not None:
        where += guard[1]
    update = _update(entity, tuple(sets), None if guard is None else guard[0])
    seq = tx.next_seq()
    outcome = status if status is not None else (wanted if wanted in OUTCOMES else None)
    data = data if data is not None else cause.data
    reason = None if cause.reason is None else str(cause.reason)  # a Reason: its string
    record = Transition(
        seq, pipeline, entity.value, ident, current, wanted, outcome, reason, cause.actor, now,
        data,
    )  # fmt: skip
    row = _log_row(record)
    if tx.dialect == "postgres":
        # One round trip: the log row is written only if the guarded update took.
        changed = tx.run(_moved_and_logged(update), *sets.values(), *where, *row)
    else:
        changed = tx.run(update, *sets.values(), *where)
        if changed == 1:
            tx.run(_INSERT, *row)
    if changed != 1:
        raise Conflict(f"{entity} {ident} is no longer {current}")
    tx.published.append(record)  # type: ignore[attr-defined]
    return record


@cache
def _update(entity: Entity, columns: tuple[str, ...], guard: str | None) -> str:
    """The guarded UPDATE of a move that sets `columns` (the statement text, built once)."""
    table, keys = _ROWS[entity]
    sets = ", ".join(f"{c} = ?" for c in columns)
    where = " AND ".join(f"{k} = ?" for k in (*keys, "state"))
    return f"UPDATE {table} SET {sets} WHERE {where}" + ("" if guard is None else f" AND {guard}")


@cache
def _moved_and_logged(update: str) -> str:
    return f"WITH moved AS ({update} RETURNING 1) {_INSERT_SELECT} FROM moved"


def apply(tx: Tx, pipeline: str, moves: Iterable[Move]) -> None:
    """Make the moves the rules decided (`otto.psm.rules`), in order, each one guarded."""
    for m in moves:
        move(
            tx, pipeline, m.entity, m.ident, m.current, m.wanted, m.cause, m.status, m.data,
            m.columns,
        )  # fmt: skip


def record_creation(tx: Tx, pipeline: str, cause: Cause, data: dict[str, Any]) -> Transition:
    """The first entry of a pipeline's history: it came to be, Pending."""
    record = Transition(
        tx.next_seq(), pipeline, Entity.PIPELINE.value, pipeline, None, "Pending", None,
        None if cause.reason is None else str(cause.reason), cause.actor, time.time(), data,
    )  # fmt: skip
    tx.run(_INSERT, *_log_row(record))
    tx.published.append(record)  # type: ignore[attr-defined]
    return record


def _log_row(t: Transition) -> tuple[Any, ...]:
    return (
        t.seq, t.pipeline, t.entity, t.id, t.from_state, t.to_state, t.status, t.reason,
        t.actor, t.at, json.dumps(t.data) if t.data else None,
    )  # fmt: skip
