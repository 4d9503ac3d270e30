"""The PSM's rules without a database: snapshots in, moves out.

A tiny simulator applies the moves to the snapshot, as the store would; the store tests
(test_psm_*) prove the same moves are applied atomically on SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otto.conditions import Trigger
from otto.psm import rules
from otto.psm.errors import Conflict
from otto.psm.records import Cause
from otto.psm.rules import BatchState, ContextState, Move, RunState, StepState
from otto.psm.states import TERMINAL, Entity, Reason, check
from otto.status import Status

NOW = 1000.0
CAUSE = Cause("test")


def make_run(shape: list[tuple[str, list[int]]], gates: dict[str, bool] | None = None) -> RunState:
    """A new run: one (mode, [steps per context]) per batch, everything Pending; `gates`:
    the contexts (by uuid) with a condition, and whether it holds on branch main."""
    batches = tuple(
        BatchState(
            b, mode, "Pending",
            contexts=tuple(
                ContextState(
                    f"c{b}.{c}", b, c, "Pending",
                    steps=tuple(StepState(f"s{b}.{c}.{s}", "Pending") for s in range(steps)),
                )
                for c, steps in enumerate(contexts)
            ),
        )
        for b, (mode, contexts) in enumerate(shape)
    )  # fmt: skip
    if not gates:
        return RunState("p", "Pending", batches)
    batches = tuple(
        replace(b, contexts=tuple(
            replace(c, condition=condition(gates[c.uuid])) if c.uuid in gates else c
            for c in b.contexts
        ))
        for b in batches
    )  # fmt: skip
    return RunState("p", "Pending", batches, gates=rules.GateInputs(Trigger(branch="main")))


def condition(holds: bool) -> str:
    """A stored condition that holds on branch main, or one that does not."""
    branch = "main" if holds else "release"
    ast = {"op": "==", "left": {"var": "branch"}, "right": {"str": branch}}
    return json.dumps({"source": f"branch == '{branch}'", "ast": ast, "env": {}})


def play(run: RunState, moves: list[Move]) -> RunState:
    """Apply moves as the store does: each must be allowed and start where things are."""
    for m in moves:
        check(m.entity, m.ident, m.current, m.wanted, m.cause.reason)
        assert state_of(run, m.entity, m.ident) == m.current, m
        run = _moved(run, m)
    return run


def state_of(run: RunState, entity: Entity, ident: str) -> str:
    if entity is Entity.PIPELINE:
        return run.state
    if entity is Entity.BATCH:
        return run.batches[int(ident)].state
    for ctx in (c for b in run.batches for c in b.contexts):
        if entity is Entity.CONTEXT and ctx.uuid == ident:
            return ctx.state
        for step in ctx.steps:
            if entity is Entity.STEP and step.uuid == ident:
                return step.state
    raise KeyError(ident)


def _moved(run: RunState, m: Move) -> RunState:
    if m.entity is Entity.PIPELINE:
        return replace(run, state=m.wanted)

    def batch(b: BatchState) -> BatchState:
        if m.entity is Entity.BATCH:
            return replace(b, state=m.wanted, status=m.status) if str(b.idx) == m.ident else b
        return replace(b, contexts=tuple(context(c) for c in b.contexts))

    def context(c: ContextState) -> ContextState:
        if m.entity is Entity.CONTEXT and c.uuid == m.ident:
            columns = m.columns or {}
            return replace(
                c, state=m.wanted, orchestrator=columns.get("orchestrator", c.orchestrator)
            )
        steps = tuple(replace(s, state=m.wanted) if s.uuid == m.ident else s for s in c.steps)
        return replace(c, steps=steps)

    return replace(run, batches=tuple(batch(b) for b in run.batches))


def live_batch(run: RunState) -> BatchState | None:
    return next((b for b in run.batches if b.state not in ("Pending", "Complete", "NotRun")), None)


def award_all(run: RunState, batch: BatchState) -> RunState:
    contexts = tuple(replace(c, orchestrator="o") for c in batch.contexts)
    run = replace(run, batches=tuple(
        replace(b, contexts=contexts) if b.idx == batch.idx else b for b in run.batches
    ))  # fmt: skip
    return play(run, rules.close_auction(run.batches[batch.idx], "auctioneer"))


def claim(run: RunState, ctx: ContextState) -> RunState:
    moves = rules.claim(run.batches[ctx.batch], ctx.uuid, "o", CAUSE, {}, {})
    return play(run, moves)


def drive(
    run: RunState, outcomes: list[Status], abort_at: int | None = None,
    answers: list[str] | None = None,
) -> RunState:  # fmt: skip
    """Run the pipeline to its end: start it, award, claim and finish each context in turn with the
    next of `outcomes` (Success once they run out); abort before the `abort_at`th claim;
    answer a Waiting context with the next of `answers` (`respond`; approve when none)."""
    answers = list(answers or [])
    if run.state == "Pending":  # (a run already going is carried on)
        started = rules.start(run, CAUSE, NOW)
        try:
            assert rules.start(narrowed(run, None), CAUSE, NOW) == started  # moves no step
        except rules.NarrowSnapshot:  # but those of contexts it skips
            assert any(m.wanted == "Skipped" for m in started)
        run = play(run, started)
    claims = 0
    while (batch := live_batch(run)) is not None:
        if batch.state == "AuctionStarted":
            run = award_all(run, batch)
            continue
        batch = run.batches[batch.idx]
        pending = [c for c in batch.contexts if c.state == "Pending"]
        running = [c for c in batch.contexts if c.state in ("Running", "Aborting")]
        waiting = [c for c in batch.contexts if c.state == "Waiting"]
        if waiting and not running and (batch.mode == "Linear" or not pending):
            run = play(run, respond(run, waiting[0].uuid, answers.pop(0) if answers else "approve"))
            continue
        if abort_at is not None and claims == abort_at and run.state == "Running":
            run = play(run, rules.abort(run, Cause("api", Reason.USER_ABORT), NOW))
            run = replace(run, abort_requested=True, abort_reason=Reason.USER_ABORT)
            abort_at = None
            continue
        if pending and (batch.mode != "Linear" or not running):
            run = claim(run, pending[0])
            claims += 1
            if batch.mode != "Linear" and len(pending) > 1:
                continue  # start them all before any ends
        ctx = next(c for c in run.batches[batch.idx].contexts if c.state in ("Running", "Aborting"))
        outcome = outcomes.pop(0) if outcomes else Status.SUCCESS
        if ctx.state == "Aborting":
            outcome = Status.ABORTED
        run = play(run, finish(run, ctx.uuid, outcome))
    return run


def finish(run: RunState, context: str, outcome: Status) -> list[Move]:
    """`finish_context`'s moves, checking that a snapshot with only the context's steps
    decides the same, or says it is too narrow."""
    moves = rules.finish_context(run, context, outcome, CAUSE, NOW)
    with contextlib.suppress(rules.NarrowSnapshot):
        assert rules.finish_context(narrowed(run, context), context, outcome, CAUSE, NOW) == moves
    return moves


def narrowed(run: RunState, context: str | None) -> RunState:
    """`run` as a snapshot that read only `context`'s steps (None: no step)."""
    return replace(run, batches=tuple(
        replace(b, contexts=tuple(c if c.uuid == context else replace(c, steps=None)
                                  for c in b.contexts))
        for b in run.batches
    ))  # fmt: skip


def executing(run: RunState, states: list[str]) -> RunState:
    """`run` with its first batch executing, its contexts in `states`."""
    first = run.batches[0]
    ctxs = tuple(replace(c, state=s) for c, s in zip(first.contexts, states, strict=True))
    batch = replace(first, state="Executing", contexts=ctxs)
    return replace(run, state="Running", batches=(batch, *run.batches[1:]))


def contexts(run: RunState) -> dict[str, str]:
    return {c.uuid: c.state for b in run.batches for c in b.contexts}


# -- what a failure does, per batch mode ----------------------------------------------

FAILURE_CASES = [
    # mode, contexts' states, which one fails, what its siblings become
    ("Linear", ["Running", "Pending", "Pending"], 0, ["NotRun", "NotRun"]),
    ("Parallel", ["Running", "Running", "Pending"], 0, ["Running", "Pending"]),
    ("Fanout", ["Running", "Running", "Pending"], 0, ["Aborting", "NotRun"]),
    ("Fanout", ["Success", "Running", "Running"], 2, ["Success", "Aborting"]),
]


@pytest.mark.parametrize(("mode", "states", "failing", "siblings"), FAILURE_CASES)
def test_a_failure_stops_siblings_as_the_mode_says(
    mode: str, states: list[str], failing: int, siblings: list[str]
) -> None:
    run = make_run([(mode, [1] * len(states))])
    run = executing(run, states)
    failed = run.batches[0].contexts[failing].uuid
    after = play(run, rules.finish_context(run, failed, Status.FAILED, CAUSE, NOW))
    others = [s for uuid, s in contexts(after).items() if uuid != failed]
    assert others == siblings
    assert contexts(after)[failed] == "Failed"
    stopped = [m for m in rules.finish_context(run, failed, Status.FAILED, CAUSE, NOW)
               if m.entity is Entity.CONTEXT and m.ident != failed]  # fmt: skip
    reasons = {"Linear": Reason.PREVIOUS_CONTEXT_FAILED, "Fanout": Reason.FANOUT_SIBLING_FAILED}
    assert all(m.cause.reason == reasons[mode] for m in stopped)


def test_the_context_takes_the_worst_of_its_report_and_its_steps() -> None:
    run = make_run([("Linear", [2])])
    run = play(run, rules.start(run, CAUSE, NOW))
    run = claim(award_all(run, run.batches[0]), run.batches[0].contexts[0])
    ctx = run.batches[0].contexts[0]
    steps = (replace(ctx.steps[0], state="Unstable"), replace(ctx.steps[1], state="Running"))
    run = replace(run, batches=(replace(run.batches[0], contexts=(replace(ctx, steps=steps),)),))
    moves = rules.finish_context(run, ctx.uuid, Status.SUCCESS, CAUSE, NOW)
    assert moves[0].wanted == "Unstable" and moves[0].columns == {
        "lease_expires": None,
        "finished_at": NOW,  # the clock is the caller's
    }
    assert (moves[1].ident, moves[1].wanted) == ("s0.0.1", "Unstable")
    play(run, moves)
    assert [m.wanted for m in moves[-2:]] == ["Complete", "Complete"]
    assert moves[-1].entity is Entity.PIPELINE and moves[-1].status == "Unstable"


@pytest.mark.parametrize(
    ("shape", "states", "outcome", "narrow_enough"),
    [
        ([("Linear", [1, 1]), ("Linear", [1])], ["Running", "Pending"], Status.SUCCESS, True),
        ([("Parallel", [1, 1]), ("Linear", [1])], ["Success", "Running"], Status.SUCCESS, True),
        ([("Linear", [1, 1]), ("Linear", [1])], ["Running", "Pending"], Status.FAILED, False),
        ([("Parallel", [1]), ("Linear", [1])], ["Running"], Status.UNSTABLE, True),
        ([("Parallel", [1, 1]), ("Linear", [1])], ["Failed", "Running"], Status.SUCCESS, False),
    ],
)
def test_an_ending_context_needs_other_steps_only_when_it_stops_them(
    shape: list[tuple[str, list[int]]], states: list[str], outcome: Status, narrow_enough: bool
) -> None:
    """A snapshot with only the ending context's steps is enough unless the ending reaches
    other contexts (siblings stopped, later batches skipped): then the rules say so."""
    run = executing(make_run(shape), states)
    ending = next(c.uuid for c in run.batches[0].contexts if c.state == "Running")
    full = rules.finish_context(run, ending, outcome, CAUSE, NOW)
    if narrow_enough:
        assert rules.finish_context(narrowed(run, ending), ending, outcome, CAUSE, NOW) == full
    else:
        with pytest.raises(rules.NarrowSnapshot):
            rules.finish_context(narrowed(run, ending), ending, outcome, CAUSE, NOW)


def test_an_award_closes_the_auction_once_all_that_may_start_are_awarded() -> None:
    run = make_run([("Parallel", [0, 0])])
    batch = play(run, rules.start(run, CAUSE, NOW)).batches[0]
    assert rules.award(batch, "c0.0", "o", "auctioneer") == []
    first, second = batch.contexts
    batch = replace(batch, contexts=(replace(first, orchestrator="o"), second))
    moves = rules.award(batch, "c0.1", "p", "auctioneer")
    assert [m.wanted for m in moves] == ["AuctionCompleted", "Provisioning"]
    assert moves[0].data == {"awards": {"c0.0": "o", "c0.1": "p"}}
    provisioning = replace(batch, state="Provisioning")
    assert rules.award(provisioning, "c0.1", "p", "auctioneer") == []  # a live batch's
    running = replace(provisioning, contexts=(replace(first, state="Running"), second))
    with pytest.raises(Conflict, match="not open for award"):
        rules.award(running, "c0.0", "o", "auctioneer")
    with pytest.raises(Conflict, match="not open for award"):
        rules.award(replace(batch, state="Pending"), "c0.1", "o", "auctioneer")


@pytest.mark.parametrize(
    ("state", "why", "outcome"),
    [
        ("Running", Reason.AGENT_LOST, "Error"),
        ("Aborting", Reason.AGENT_LOST, "Aborted"),
        ("Running", Reason.TIMEOUT, "Failed"),
        ("Success", Reason.AGENT_LOST, None),  # it ended meanwhile: nothing to do
    ],
)
def test_expiry(state: str, why: Reason, outcome: str | None) -> None:
    run = executing(make_run([("Parallel", [1])]), [state])
    moves = rules.expire(run, "c0.0", why, NOW)
    if outcome is None:
        assert moves == []
        return
    assert (moves[0].wanted, moves[0].cause) == (outcome, Cause("psm", why))
    play(run, moves)


def test_a_linear_context_waits_for_the_one_before_it() -> None:
    run = make_run([("Linear", [0, 0])])
    run = play(run, rules.start(run, CAUSE, NOW))
    batch = award_all(run, run.batches[0]).batches[0]
    with pytest.raises(Conflict, match="waits for the one before it"):
        rules.claim(batch, "c0.1", "o", CAUSE, {}, {})
    with pytest.raises(Conflict, match="not awarded to other"):
        rules.claim(batch, "c0.0", "other", CAUSE, {}, {})
    assert [m.wanted for m in rules.claim(batch, "c0.0", "o", CAUSE, {}, {})] == [
        "Executing",
        "Running",
    ]


def test_an_abort_before_anything_ran_ends_everything() -> None:
    run = make_run([("Linear", [1]), ("Fanout", [1, 1])])
    cause = Cause("api", Reason.SUPERSEDED, {"by": "q"})
    moves = rules.abort(replace(run, state="Running"), cause, NOW)
    after = play(replace(run, state="Running"), moves)
    assert after.state == "Complete" and moves[-1].status == "Aborted"
    assert {s for s in contexts(after).values()} == {"NotRun"}
    assert all(m.cause == cause for m in moves)


def test_an_empty_batch_completes_at_once_and_the_run_moves_on() -> None:
    run = make_run([("Parallel", []), ("Linear", [1])])
    after = play(run, rules.start(run, CAUSE, NOW))
    assert [b.state for b in after.batches] == ["Complete", "AuctionStarted"]


def test_a_retry_reruns_what_failed_from_its_batch_on() -> None:
    run = drive(make_run([("Linear", [1]), ("Parallel", [1, 1]), ("Linear", [1])]),
                [Status.SUCCESS, Status.FAILED])  # fmt: skip
    assert run.state == "Complete"
    assert rules.retried(run) == ["c1.0", "c2.0"]
    moves = rules.retry(run, Cause("api", Reason.RETRY), NOW)
    after = play(run, moves)
    assert after.state == "Running"
    assert [b.state for b in after.batches] == ["Complete", "AuctionStarted", "Pending"]
    assert contexts(after) == {"c0.0": "Success", "c1.0": "Pending", "c1.1": "Success",
                               "c2.0": "Pending"}  # fmt: skip
    assert rules.retry(drive(make_run([("Linear", [1])]), []), CAUSE, NOW) == []


def test_a_hand_back_puts_the_context_and_its_steps_back() -> None:
    run = make_run([("Linear", [2])])
    run = play(run, rules.start(run, CAUSE, NOW))
    run = claim(award_all(run, run.batches[0]), run.batches[0].contexts[0])
    ctx = run.batches[0].contexts[0]
    steps = (replace(ctx.steps[0], state="Success"), replace(ctx.steps[1], state="Running"))
    run = replace(run, batches=(replace(run.batches[0], contexts=(replace(ctx, steps=steps),)),))
    after = play(run, rules.hand_back(run, ctx.uuid, Cause("o", Reason.HANDED_BACK)))
    assert contexts(after) == {"c0.0": "Pending"}
    assert [s.state for s in after.batches[0].contexts[0].steps] == ["Pending", "Pending"]
    with pytest.raises(Conflict):
        rules.hand_back(after, ctx.uuid, CAUSE)


def test_next_wakeup() -> None:
    assert rules.next_wakeup(None, None) is None
    assert rules.next_wakeup(50.0, None) == 50.0
    assert rules.next_wakeup(50.0, 10.0) == 10.0 + rules.DEADLINE_GRACE
    assert rules.lease_terms(NOW, 30.0, None, 3600.0) == (NOW + 30.0, NOW + 3600.0)
    assert rules.lease_terms(NOW, 30.0, 5.0, 3600.0) == (NOW + 30.0, NOW + 5.0)


# -- properties ------------------------------------------------------------------------

MODES = st.sampled_from(["Linear", "Parallel", "Fanout"])
SHAPES = st.lists(st.tuples(MODES, st.lists(st.integers(0, 2), max_size=3)), min_size=0, max_size=3)
OUTCOMES = st.lists(st.sampled_from(list(Status)), max_size=8)


def _terminal(run: RunState) -> bool:
    return (
        run.state == "Complete"
        and all(b.state in TERMINAL[Entity.BATCH] for b in run.batches)
        and all(
            c.state in TERMINAL[Entity.CONTEXT]
            and all(s.state in TERMINAL[Entity.STEP] for s in c.steps)
            for b in run.batches
            for c in b.contexts
        )
    )


@settings(max_examples=300, deadline=None)
@given(SHAPES, OUTCOMES, st.none() | st.integers(0, 6))
def test_every_run_ends_with_every_entity_terminal(
    shape: list[tuple[str, list[int]]], outcomes: list[Status], abort_at: int | None
) -> None:
    """Every move is allowed by the table and starts where things are (`play` checks);
    whatever the outcomes and an abort at any point, the run completes with nothing left
    unfinished, and no batch runs after one that failed."""
    run = drive(make_run(shape), list(outcomes), abort_at)
    assert _terminal(run)
    failed = [b.idx for b in run.batches if b.status and Status(b.status).is_failure]
    if failed:
        assert all(b.state == "NotRun" for b in run.batches[failed[0] + 1 :])


@settings(max_examples=200, deadline=None)
@given(SHAPES)
def test_a_run_whose_contexts_all_succeed_completes_successfully(
    shape: list[tuple[str, list[int]]],
) -> None:
    run = drive(make_run(shape), [])
    assert _terminal(run)
    assert all(b.status == "Success" for b in run.batches)
    assert set(contexts(run).values()) <= {"Success"}


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 4), st.integers(0, 3), st.data())
def test_a_failed_fanout_context_stops_its_siblings(size: int, running: int, data) -> None:
    run = make_run([("Fanout", [1] * size), ("Linear", [1])])
    states = ["Running" if i < running else "Pending" for i in range(size)]
    states[data.draw(st.integers(0, size - 1))] = "Running"
    run = executing(run, states)
    failed = data.draw(st.sampled_from([u for u, s in contexts(run).items() if s == "Running"]))
    after = play(run, rules.finish_context(run, failed, Status.FAILED, CAUSE, NOW))
    siblings = {u: s for u, s in contexts(after).items() if u.startswith("c0.") and u != failed}
    assert set(siblings.values()) <= {"Aborting", "NotRun"}
    for uuid in [u for u, s in siblings.items() if s == "Aborting"]:
        after = play(after, rules.finish_context(after, uuid, Status.ABORTED, CAUSE, NOW))
    assert after.batches[0].status == "Failed" and after.batches[1].state == "NotRun"
    assert after.state == "Complete"


# -- conditions ------------------------------------------------------------------------

CONDITION_CASES = [
    # mode, whose condition holds (None: has none), the contexts' end states, the batch's
    ("Parallel", [True, None], ["Success", "Success"], "Success"),
    ("Parallel", [False, None], ["Skipped", "Success"], "Success"),
    ("Parallel", [False, False], ["Skipped", "Skipped"], "Success"),
    ("Linear", [None, False, None], ["Success", "Skipped", "Success"], "Success"),
    ("Fanout", [False, True], ["Skipped", "Success"], "Success"),
]


@pytest.mark.parametrize(("mode", "holds", "ends", "status"), CONDITION_CASES)
def test_a_context_whose_condition_is_false_is_skipped(
    mode: str, holds: list[bool | None], ends: list[str], status: str
) -> None:
    gates = {f"c0.{i}": h for i, h in enumerate(holds) if h is not None}
    run = drive(make_run([(mode, [2] * len(holds)), ("Linear", [1])], gates), [])
    assert list(contexts(run).values()) == [*ends, "Success"]
    assert run.batches[0].status == status and run.state == "Complete"
    for ctx in run.batches[0].contexts:
        if ctx.state == "Skipped":
            assert [s.state for s in ctx.steps] == ["NotRun", "NotRun"]


def test_a_skip_is_decided_when_the_batch_starts_and_records_what_it_saw() -> None:
    run = make_run([("Linear", [1]), ("Parallel", [1, 1])], {"c1.0": False, "c1.1": True})
    run = play(run, rules.start(run, CAUSE, NOW))
    assert contexts(run) == {"c0.0": "Pending", "c1.0": "Pending", "c1.1": "Pending"}
    run = claim(award_all(run, run.batches[0]), run.batches[0].contexts[0])
    moves = rules.finish_context(run, "c0.0", Status.SUCCESS, CAUSE, NOW)
    skip = next(m for m in moves if m.ident == "c1.0")
    assert (skip.current, skip.wanted) == ("Pending", "Skipped")
    assert skip.cause.reason == Reason.CONDITION_FALSE
    assert skip.cause.data == {"condition": "branch == 'release'", "seen": {"branch": "main"}}
    assert not any(m.ident == "c1.1" for m in moves)
    with pytest.raises(rules.NarrowSnapshot):  # no inputs read: decide again with them
        rules.finish_context(replace(run, gates=None), "c0.0", Status.SUCCESS, CAUSE, NOW)


def test_a_batch_of_skipped_contexts_is_never_auctioned() -> None:
    run = make_run([("Parallel", [1, 1]), ("Linear", [1])], {"c0.0": False, "c0.1": False})
    run = play(run, rules.start(run, CAUSE, NOW))
    assert [b.state for b in run.batches] == ["Complete", "AuctionStarted"]
    assert rules.claimable(run.batches[0]) == []


def test_a_linear_batch_goes_past_a_skipped_context() -> None:
    gates = {"c0.1": False}
    run = make_run([("Linear", [1, 1, 1])], gates)
    run = play(run, rules.start(run, CAUSE, NOW))
    run = claim(award_all(run, run.batches[0]), run.batches[0].contexts[0])
    run = play(run, rules.finish_context(run, "c0.0", Status.SUCCESS, CAUSE, NOW))
    assert [c.uuid for c in rules.claimable(run.batches[0])] == ["c0.2"]


def test_a_retry_of_everything_evaluates_the_condition_again() -> None:
    run = drive(make_run([("Parallel", [1, 1])], {"c0.0": False}), [Status.FAILED])
    assert contexts(run) == {"c0.0": "Skipped", "c0.1": "Failed"}
    assert rules.retried(run) == ["c0.1"]  # a skipped context is not a failure to redo
    after = play(run, rules.retry(run, Cause("api", Reason.RETRY), NOW, every=True))
    assert contexts(after) == {"c0.0": "Skipped", "c0.1": "Pending"}


@settings(max_examples=200, deadline=None)
@given(SHAPES, OUTCOMES, st.none() | st.integers(0, 6), st.data())
def test_every_run_with_conditions_ends_with_every_entity_terminal(
    shape: list[tuple[str, list[int]]], outcomes: list[Status], abort_at: int | None, data
) -> None:
    """With conditions anywhere, every move is still allowed and the run completes; a
    context is Skipped exactly when its batch started and its condition is false."""
    uuids = [f"c{b}.{c}" for b, (_, counts) in enumerate(shape) for c in range(len(counts))]
    gates = {u: data.draw(st.booleans(), label=u) for u in uuids if data.draw(st.booleans())}
    run = drive(make_run(shape, gates), list(outcomes), abort_at)
    assert _terminal(run)
    for batch in run.batches:
        for ctx in batch.contexts:
            skipped = batch.state != "NotRun" and gates.get(ctx.uuid) is False
            assert (ctx.state == "Skipped") == skipped, ctx


# -- approvals ---------------------------------------------------------------------------


def gated(run: RunState, inputs: dict[str, dict[str, Any]]) -> RunState:
    """`run` with approval gates: by context uuid, its stored `gate_input`."""
    return replace(run, batches=tuple(
        replace(b, contexts=tuple(
            replace(c, gate_input=json.dumps(inputs[c.uuid])) if c.uuid in inputs else c
            for c in b.contexts
        ))
        for b in run.batches
    ))  # fmt: skip


ASK = {"message": "Deploy?", "parameters": [], "timeout": None}


def respond(run: RunState, context: str, how: str) -> list[Move]:
    """A Waiting context's answer (`approve`, `reject`) or its input's timeout (`timeout`)."""
    if how == "timeout":
        return rules.input_timed_out(run, context, NOW)
    (at,) = json.loads(run.context(context).gate_input or "{}")  # one gate per context here
    cause = Cause("alice", Reason.APPROVED if how == "approve" else Reason.REJECTED)
    return rules.answer(run, context, how == "approve", at, cause, NOW)


def started(shape: list[tuple[str, list[int]]], inputs: dict[str, dict[str, Any]]) -> RunState:
    run = gated(make_run(shape), inputs)
    return play(run, rules.start(run, CAUSE, NOW))


def test_an_enter_input_holds_the_context_waiting_when_its_batch_starts() -> None:
    run = started([("Parallel", [1, 1])], {"c0.0": {"enter": {**ASK, "timeout": 60.0}}})
    assert contexts(run) == {"c0.0": "Waiting", "c0.1": "Pending"}
    new = gated(make_run([("Parallel", [1, 1])]), {"c0.0": {"enter": {**ASK, "timeout": 60.0}}})
    hold = next(m for m in rules.start(new, CAUSE, NOW) if m.ident == "c0.0")
    assert hold.cause.reason == Reason.INPUT
    assert hold.data == {"gate": "enter", "message": "Deploy?", "parameters": []}
    assert hold.columns == {"waiting_for": "enter", "input_deadline": NOW + 60.0}
    assert [c.uuid for c in rules.claimable(run.batches[0])] == ["c0.1"]  # never auctioned


def test_an_approved_enter_input_is_auctioned_and_the_batch_waits_for_it() -> None:
    run = started([("Parallel", [1, 1]), ("Linear", [1])], {"c0.0": {"enter": ASK}})
    run = award_all(run, run.batches[0])  # the other one is awarded; the auction closes
    run = claim(run, run.batches[0].contexts[1])
    run = play(run, rules.finish_context(run, "c0.1", Status.SUCCESS, CAUSE, NOW))
    assert run.batches[0].state == "Executing" and run.batches[1].state == "Pending"
    run = play(run, respond(run, "c0.0", "approve"))
    assert contexts(run)["c0.0"] == "Pending"
    assert [c.uuid for c in rules.claimable(run.batches[0])] == ["c0.0"]


@pytest.mark.parametrize(
    ("mode", "sibling", "batch"),
    [("Linear", "NotRun", "Failed"), ("Parallel", "Pending", None), ("Fanout", "NotRun", "Failed")],
)
def test_a_rejected_input_fails_the_context_and_its_mode_decides_the_rest(
    mode: str, sibling: str, batch: str | None
) -> None:
    run = started([(mode, [2, 1])], {"c0.0": {"enter": ASK}})
    moves = respond(run, "c0.0", "reject")
    assert moves[0].cause.reason == Reason.REJECTED
    run = play(run, moves)
    assert contexts(run) == {"c0.0": "Failed", "c0.1": sibling}
    assert [s.state for s in run.batches[0].contexts[0].steps] == ["NotRun", "NotRun"]
    assert run.batches[0].status == batch


def test_an_exit_input_waits_after_success_releasing_the_lease() -> None:
    run = started([("Linear", [1, 1])], {"c0.0": {"exit": ASK}})
    run = claim(award_all(run, run.batches[0]), run.batches[0].contexts[0])
    moves = rules.finish_context(run, "c0.0", Status.SUCCESS, CAUSE, NOW)
    hold = moves[0]
    assert (hold.current, hold.wanted) == ("Running", "Waiting")
    assert hold.data == {"gate": "exit", "message": "Deploy?", "parameters": [],
                         "outcome": "Success"}  # fmt: skip
    assert hold.columns == {"waiting_for": "exit", "input_deadline": None, "lease_expires": None}
    run = play(run, moves)
    assert rules.claimable(run.batches[0]) == []  # the next one waits
    run = play(run, respond(run, "c0.0", "approve"))
    assert contexts(run) == {"c0.0": "Success", "c0.1": "Pending"}


def test_an_exit_input_is_not_asked_after_a_failure() -> None:
    run = drive(gated(make_run([("Linear", [1])]), {"c0.0": {"exit": ASK}}), [Status.FAILED])
    assert contexts(run) == {"c0.0": "Failed"} and run.state == "Complete"


def test_an_input_nobody_answers_in_time_aborts_the_context() -> None:
    run = drive(gated(make_run([("Linear", [1]), ("Linear", [1])]), {"c0.0": {"enter": ASK}}),
                [], answers=["timeout"])  # fmt: skip
    assert contexts(run) == {"c0.0": "Aborted", "c1.0": "NotRun"}
    assert rules.input_timed_out(run, "c0.0", NOW) == []  # no longer waiting: nothing


def test_an_abort_ends_a_waiting_context_aborted() -> None:
    run = started([("Parallel", [1, 1])], {"c0.0": {"enter": ASK}})
    run = play(run, rules.abort(run, Cause("api", Reason.USER_ABORT), NOW))
    assert contexts(run) == {"c0.0": "Aborted", "c0.1": "NotRun"}
    assert run.state == "Complete" and run.batches[0].status == "Aborted"
    with pytest.raises(Conflict):
        respond(run, "c0.0", "approve")


@settings(max_examples=200, deadline=None)
@given(SHAPES, OUTCOMES, st.none() | st.integers(0, 6), st.data())
def test_every_run_with_inputs_ends_with_every_entity_terminal(
    shape: list[tuple[str, list[int]]], outcomes: list[Status], abort_at: int | None, data
) -> None:
    """With enter and exit inputs anywhere, answered any way (approve, reject, time out),
    racing aborts, every move is allowed and the run completes."""
    uuids = [f"c{b}.{c}" for b, (_, counts) in enumerate(shape) for c in range(len(counts))]
    kinds = st.sampled_from(["enter", "exit"])
    inputs = {u: {data.draw(kinds, label=u): ASK} for u in uuids if data.draw(st.booleans())}
    answers = data.draw(st.lists(st.sampled_from(["approve", "reject", "timeout"]), max_size=8))
    run = drive(gated(make_run(shape), inputs), list(outcomes), abort_at, answers)
    assert _terminal(run)
    assert "Waiting" not in contexts(run).values()
