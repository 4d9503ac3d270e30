"""Hook contexts in the PSM's rules (`rollback`, `notify`): the trailing hook batches
start once the rest of the run has ended, aborted too; a hook runs only when the outcome
it reacts to came about, and never changes that outcome."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_rules import (
    CAUSE,
    NOW,
    OUTCOMES,
    SHAPES,
    _terminal,
    condition,
    contexts,
    drive,
    make_run,
    play,
)

from otto.conditions import Trigger
from otto.psm import rules
from otto.psm.records import Cause
from otto.psm.rules import RunState
from otto.psm.states import OUTCOMES as ENDS
from otto.psm.states import Entity, Reason
from otto.status import Status


def hooked(
    shape: list[tuple[str, list[int]]], *hook_batches: dict[str, tuple[str, str | None]]
) -> RunState:
    """A new run of `shape`, then one Parallel hook batch per dict: hook uuid → (on, of)."""
    run = make_run([*shape, *(("Parallel", [1] * len(h)) for h in hook_batches)])
    batches = list(run.batches)
    for offset, hooks in enumerate(hook_batches):
        b = len(shape) + offset
        ctxs = tuple(
            replace(c, uuid=uuid, hook=json.dumps({"on": on, "of": of}))
            for c, (uuid, (on, of)) in zip(batches[b].contexts, hooks.items(), strict=True)
        )
        batches[b] = replace(batches[b], contexts=ctxs)
    return replace(run, batches=tuple(batches))


def ended(run: RunState, outcomes: list[Status], abort_at: int | None = None) -> RunState:
    return drive(run, list(outcomes), abort_at)


def at_the_end(run: RunState, running: str) -> RunState:
    """`run` with `running` Running (its batch Executing), every batch before it done
    (Success) and those after it Pending."""
    place = next(b.idx for b in run.batches for c in b.contexts if c.uuid == running)

    def batch(b: Any) -> Any:
        if b.idx > place:
            return b
        state = "Executing" if b.idx == place else "Complete"
        contexts = tuple(
            replace(c, state="Running" if c.uuid == running else "Success", orchestrator="o")
            for c in b.contexts
        )
        return replace(b, state=state, status=None if b.idx == place else "Success",
                       contexts=contexts)  # fmt: skip

    return replace(run, state="Running", batches=tuple(batch(b) for b in run.batches))


def test_a_failing_stages_rollback_runs_and_a_succeeding_ones_does_not() -> None:
    shape = [("Parallel", [1, 1])]
    hooks = {"undo0": ("rollback", "c0.0"), "undo1": ("rollback", "c0.1")}
    run = ended(hooked(shape, hooks), [Status.FAILED, Status.SUCCESS, Status.SUCCESS])
    assert _terminal(run)
    assert contexts(run) == {"c0.0": "Failed", "c0.1": "Success", "undo0": "Success",
                             "undo1": "Skipped"}  # fmt: skip


def test_an_untriggered_hook_is_skipped_with_what_it_saw() -> None:
    run = hooked([("Linear", [1])], {"undo": ("rollback", "c0.0")})
    moves = rules.finish_context(at_the_end(run, "c0.0"), "c0.0", Status.SUCCESS, CAUSE, NOW)
    skip = next(m for m in moves if m.ident == "undo")
    assert (skip.current, skip.wanted, skip.cause.reason) == ("Pending", "Skipped",
                                                               Reason.NOT_TRIGGERED)  # fmt: skip
    assert skip.cause.data == {"on": "rollback", "of": "c0.0", "outcome": "Success"}


def test_hooks_never_change_the_outcome_they_react_to() -> None:
    run = at_the_end(hooked([("Linear", [1])], {"tell": ("complete", None)}), "tell")
    moves = rules.finish_context(run, "tell", Status.FAILED, CAUSE, NOW)  # the notice fails
    assert [(m.entity, m.wanted, m.status) for m in moves if m.status] == [
        (Entity.BATCH, "Complete", "Failed"),
        (Entity.PIPELINE, "Complete", "Success"),
    ]


def test_the_run_completes_after_its_hooks() -> None:
    run = at_the_end(hooked([("Linear", [1])], {"tell": ("failure", None)}), "c0.0")
    after = play(run, rules.finish_context(run, "c0.0", Status.ERROR, CAUSE, NOW))
    assert after.state == "Running"
    assert contexts(after) == {"c0.0": "Error", "tell": "Pending"}
    assert [b.state for b in after.batches] == ["Complete", "AuctionStarted"]
    ended_run = ended(hooked([("Linear", [1])], {"tell": ("failure", None)}), [Status.ERROR])
    assert contexts(ended_run) == {"c0.0": "Error", "tell": "Success"}
    assert ended_run.state == "Complete"


NOTIFY_CASES = [
    # the stage's outcome, on → does the hook run?
    (Status.SUCCESS, "success", True),
    (Status.UNSTABLE, "success", True),
    (Status.FAILED, "success", False),
    (Status.FAILED, "failure", True),
    (Status.ERROR, "rollback", True),
    (Status.ABORTED, "failure", False),
    (Status.ABORTED, "complete", True),
    (Status.SUCCESS, "complete", True),
]


def test_each_kind_of_hook_reacts_to_its_outcomes() -> None:
    for outcome, on, runs in NOTIFY_CASES:
        assert rules.hook_triggered(on, outcome.value) is runs, (outcome, on)
        assert rules.hook_triggered(on, None) is False  # skipped or never run: no hook


def test_notify_complete_runs_after_an_abort() -> None:
    shape = [("Linear", [1]), ("Linear", [1])]
    hooks = {"tell": ("complete", None), "after0": ("complete", "c0.0"),
             "after1": ("complete", "c1.0")}  # fmt: skip
    run = ended(hooked(shape, hooks), [], abort_at=0)  # aborted before anything ran
    assert contexts(run) == {"c0.0": "NotRun", "c1.0": "NotRun", "tell": "Success",
                             "after0": "Skipped", "after1": "Skipped"}  # fmt: skip
    run = ended(hooked(shape, hooks), [], abort_at=1)  # between the stages
    assert contexts(run) == {"c0.0": "Success", "c1.0": "NotRun", "tell": "Success",
                             "after0": "Success", "after1": "Skipped"}  # fmt: skip
    run = at_the_end(hooked(shape, hooks), "c0.0")  # the first stage running
    run = play(run, rules.abort(run, Cause("api", Reason.USER_ABORT), NOW))
    run = replace(run, abort_requested=True, abort_reason=Reason.USER_ABORT)
    assert contexts(run)["c0.0"] == "Aborting" and contexts(run)["tell"] == "Pending"
    run = play(run, rules.finish_context(run, "c0.0", Status.ABORTED, CAUSE, NOW))
    assert contexts(run) == {"c0.0": "Aborted", "c1.0": "NotRun", "tell": "Pending",
                             "after0": "Pending", "after1": "Skipped"}  # fmt: skip
    assert contexts(ended(run, [])) == {"c0.0": "Aborted", "c1.0": "NotRun", "tell": "Success",
                                        "after0": "Success", "after1": "Skipped"}  # fmt: skip


def test_an_abort_while_hooks_run_stops_them_and_the_hooks_after() -> None:
    run = hooked([("Linear", [1])], {"undo": ("rollback", "c0.0")}, {"tell": ("complete", None)})
    run = ended(run, [Status.FAILED], abort_at=1)  # before the rollback is claimed
    assert contexts(run) == {"c0.0": "Failed", "undo": "NotRun", "tell": "NotRun"}
    assert [b.state for b in run.batches] == ["Complete", "Complete", "NotRun"]


def test_a_stage_skipped_by_its_condition_has_no_hooks_run() -> None:
    run = hooked([("Linear", [1])], {"undo": ("rollback", "c0.0"), "tell": ("complete", "c0.0")})
    ctx = replace(run.batches[0].contexts[0], condition=condition(False))
    run = replace(run, batches=(replace(run.batches[0], contexts=(ctx,)), *run.batches[1:]))
    run = replace(run, gates=rules.GateInputs(Trigger(branch="main")))
    assert contexts(ended(run, [])) == {"c0.0": "Skipped", "undo": "Skipped", "tell": "Skipped"}


def test_a_retry_decides_every_hook_again() -> None:
    run = hooked([("Linear", [1])], {"undo": ("rollback", "c0.0"), "ok": ("success", None)})
    run = ended(run, [Status.FAILED])
    assert contexts(run) == {"c0.0": "Failed", "undo": "Success", "ok": "Skipped"}
    assert rules.retried(run) == ["c0.0"]  # hooks are not what a retry redoes
    run = play(run, rules.retry(run, Cause("api", Reason.RETRY), NOW))
    assert contexts(run) == {"c0.0": "Pending", "undo": "Pending", "ok": "Pending"}
    assert contexts(ended(run, [])) == {"c0.0": "Success", "undo": "Skipped", "ok": "Success"}


ONS = st.sampled_from(["rollback", "failure", "success", "complete"])


@settings(max_examples=200, deadline=None)
@given(SHAPES, OUTCOMES, st.none() | st.integers(0, 8), st.data())
def test_every_run_with_hooks_ends_terminal_and_its_own_part_as_without_them(
    shape: list[tuple[str, list[int]]], outcomes: list[Status], abort_at: int | None, data: Any
) -> None:
    """Whatever the outcomes and an abort at any point, a run with hooks completes with
    everything terminal; its own batches and contexts end exactly as without the hooks;
    a hook that started is Skipped exactly when its outcome did not come about."""
    stages = [f"c{b}.{c}" for b, (_, counts) in enumerate(shape) for c in range(len(counts))]
    targets = st.sampled_from([None, *stages])
    hooks: dict[str, tuple[str, str | None]] = {}
    for i in range(data.draw(st.integers(1, 3), label="hooks")):
        on, of = data.draw(ONS, label="on"), data.draw(targets, label="of")
        hooks[f"h{i}"] = ("complete" if on == "rollback" and of is None else on, of)
    with_hooks = ended(hooked(shape, hooks), outcomes, abort_at)
    assert _terminal(with_hooks)
    without = ended(make_run(shape), outcomes, abort_at)
    own = len(shape)
    assert with_hooks.batches[:own] == without.batches  # hooks change nothing they react to
    reacted = {c.uuid: c.state for b in without.batches for c in b.contexts}
    hook_batch = with_hooks.batches[own]
    for ctx in hook_batch.contexts:
        if hook_batch.state == "NotRun" or ctx.state in ("NotRun", "Aborted"):
            continue  # the run never ended, or was aborted while its hooks ran
        on, of = hooks[ctx.uuid]
        if of is None:
            continue  # the run's outcome: checked by the examples above
        outcome = reacted[of] if reacted[of] in ENDS else None  # None: skipped or not run
        triggered = rules.hook_triggered(on, outcome)
        assert (ctx.state == "Skipped") == (not triggered), (ctx, on, of, outcome)
