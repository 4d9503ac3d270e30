"""Replay: every state of a run re-derived from its transition log alone, and compared
with the stored states (the rows the views read).

A run is created with its pipeline coming to be (the log's first entry, None → Pending)
and every batch, context and step Pending, no context claimed (attempt 0). Each
transition, in order, must start from the state replay has its entity in and be allowed
by the one transition table (`states.check`); it then sets what the ledger wrote with it:
the state, a pipeline's or batch's status (the transition's `status`), and a claim's
attempt and orchestrator (its `data`; a context back to Pending has no orchestrator).

An award not yet claimed is an offer, not a state: it is given back on a restart and
changes by no transition, so a context's orchestrator is compared only once claimed.

The log is read in pages (`PAGE` transitions at a time) and a run's rows once, all in one
read snapshot, so replaying a live run finds no difference that is only a race.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from otto.psm import views
from otto.psm.errors import IllegalTransition
from otto.psm.records import Transition
from otto.psm.states import PENDING, RUNNING, Entity, check
from otto.psm.store.base import Store, Tx

__all__ = ["FIELDS", "PAGE", "Difference", "Replays", "Verdict", "log", "replay"]

PAGE = 500  # transitions read at a time

# What replay re-derives of each entity, compared field by field with its stored row.
FIELDS: dict[Entity, tuple[str, ...]] = {
    Entity.PIPELINE: ("state", "status"),
    Entity.BATCH: ("state", "status"),
    Entity.CONTEXT: ("state", "attempt", "orchestrator"),
    Entity.STEP: ("state",),
}


@dataclass(frozen=True, slots=True)
class Difference:
    """One way the stored states and the log disagree: a field whose stored value is not
    the replayed one, or a transition (`seq`) replay cannot follow (`field` "transition":
    `stored` is what the log holds, `replayed` the state replay had the entity in)."""

    entity: str
    id: str
    field: str
    stored: Any
    replayed: Any
    seq: int | None = None
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        found = {"entity": self.entity, "id": self.id, "field": self.field,
                 "stored": self.stored, "replayed": self.replayed}  # fmt: skip
        if self.seq is not None:
            found["seq"] = self.seq
        if self.message is not None:
            found["message"] = self.message
        return found


@dataclass(frozen=True, slots=True)
class Verdict:
    """What replaying one run found: no differences, or each one."""

    pipeline: str
    transitions: int
    differences: list[Difference]

    @property
    def consistent(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "consistent": self.consistent,
            "transitions": self.transitions,
            "differences": [d.to_dict() for d in self.differences],
        }


@dataclass(slots=True)
class _Derived:
    """What the log has said of one entity so far."""

    state: str | None = PENDING
    status: str | None = None
    attempt: int = 0
    orchestrator: str | None = None
    claimed: bool = False  # its current attempt was claimed: its orchestrator is a state

    def compared(self, entity: Entity) -> tuple[str, ...]:
        wanted = FIELDS[entity]
        if entity is Entity.CONTEXT and not self.claimed:
            return tuple(f for f in wanted if f != "orchestrator")
        return wanted


_Key = tuple[Entity, str]


class Replays:
    """The PSM's replay (a part of `PipelineStateMachine`)."""

    store: Store

    def replay(self, uuid: str, page: int = PAGE) -> Verdict:
        """Re-derive every state of run `uuid` from its transition log and compare it with
        the stored states (NotFound for an unknown run)."""
        return self.store.read(lambda tx: replay(tx, uuid, page))


def replay(tx: Tx, uuid: str, page: int = PAGE) -> Verdict:
    """`Replays.replay` inside a read transaction `tx` (one snapshot for rows and log)."""
    stored = _stored(tx, uuid)
    derived = {key: _Derived() for key in stored}
    derived[Entity.PIPELINE, uuid] = _Derived(state=None)  # before its creation
    differences: list[Difference] = []
    count = 0
    for transition in log(tx, uuid, page):
        count += 1
        differences += _follow(derived, transition)
    for key, row in stored.items():
        differences += _compare(key, row, derived[key])
    return Verdict(uuid, count, differences)


def log(tx: Tx, uuid: str, page: int = PAGE) -> Iterator[Transition]:
    """A run's transitions in order, read `page` at a time."""
    after = -1
    while True:
        rows = tx.all(
            "SELECT * FROM transitions WHERE pipeline = ? AND seq > ? ORDER BY seq LIMIT ?",
            uuid, after, page,
        )  # fmt: skip
        for row in rows:
            yield Transition.from_row(row)
        if len(rows) < page:
            return
        after = rows[-1]["seq"]


def _stored(tx: Tx, uuid: str) -> dict[_Key, dict[str, Any]]:
    """Every stored state of a run, by entity and id (NotFound for an unknown run)."""
    run = views.pipeline_row(tx, uuid)
    found: dict[_Key, dict[str, Any]] = {(Entity.PIPELINE, uuid): dict(run)}
    for row in tx.all("SELECT idx, state, status FROM batches WHERE pipeline = ?", uuid):
        found[Entity.BATCH, str(row["idx"])] = dict(row)
    contexts = "SELECT uuid, state, attempt, orchestrator FROM contexts WHERE pipeline = ?"
    for row in tx.all(contexts, uuid):
        found[Entity.CONTEXT, row["uuid"]] = dict(row)
    steps = (
        "SELECT s.uuid, s.state FROM steps s JOIN contexts c ON c.uuid = s.context"
        " WHERE c.pipeline = ?"
    )
    for row in tx.all(steps, uuid):
        found[Entity.STEP, row["uuid"]] = dict(row)
    return found


def _follow(derived: dict[_Key, _Derived], t: Transition) -> list[Difference]:
    """Apply one transition; what is wrong with it, if anything (it is applied anyway,
    so that one bad entry is reported once, not again by everything after it)."""
    try:
        entity = Entity(t.entity)
    except ValueError:
        return [_wrong(t, None, f"no entity {t.entity!r} in the transition table")]
    now = derived.get((entity, t.id))
    if now is None:
        now = derived[entity, t.id] = _Derived()
        problems = [_wrong(t, None, f"the log moves {entity} {t.id}, which is not stored")]
    else:
        problems = _illegal(entity, t, now.state)
    _take(entity, now, t)
    return problems


def _illegal(entity: Entity, t: Transition, current: str | None) -> list[Difference]:
    if t.from_state != current:
        message = f"the log moves it from {t.from_state}, replay has it {current}"
        return [_wrong(t, current, message)]
    if current is None:  # its creation: only a pipeline comes to be, and Pending
        if entity is Entity.PIPELINE and t.to_state == PENDING:
            return []
        return [_wrong(t, current, f"illegal transition: {entity} created {t.to_state}")]
    try:
        check(entity, t.id, current, t.to_state, t.reason)
    except IllegalTransition as exc:
        return [_wrong(t, current, f"illegal transition: {exc}")]
    return []


def _take(entity: Entity, now: _Derived, t: Transition) -> None:
    """What the ledger wrote with a transition: the state, a status, a claim's terms."""
    now.state = t.to_state
    if entity in (Entity.PIPELINE, Entity.BATCH):
        now.status = t.status
    if entity is not Entity.CONTEXT:
        return
    if t.to_state == PENDING:
        now.orchestrator, now.claimed = None, False
    elif t.to_state == RUNNING and t.from_state == PENDING:
        data = t.data or {}
        now.attempt = int(data.get("attempt", now.attempt + 1))
        now.orchestrator, now.claimed = data.get("orchestrator"), True


def _compare(key: _Key, row: dict[str, Any], now: _Derived) -> list[Difference]:
    entity, ident = key
    return [
        Difference(entity.value, ident, name, row[name], getattr(now, name))
        for name in now.compared(entity)
        if row[name] != getattr(now, name)
    ]


def _wrong(t: Transition, current: str | None, message: str) -> Difference:
    logged = f"{t.from_state} → {t.to_state}" + (f" ({t.reason})" if t.reason else "")
    return Difference(t.entity, t.id, "transition", logged, current, t.seq, message)
