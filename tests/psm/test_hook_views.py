"""Hook contexts as `GET /v1/pipelines/{uuid}` shows them, on both backends: each carries
what it reacts to (`hook`: `on`, the stage context it is `of` and that stage's name), its
batch says it is a hook batch, and a hook that was not triggered says what it saw."""

from __future__ import annotations

from typing import Any

from psmkit import check_pipeline, drive

from otto.model import Batch, BatchMode, Context, Hook, HookOn, Pipeline, Step


def stage(name: str, hook: Hook | None = None) -> Context:
    context = Context(properties={"name": name}, hook=hook)
    context.steps = [Step(context=context.uuid, symbol="sh", parameters=[f"echo {name}"])]
    return context


def with_hooks() -> tuple[Pipeline, Context]:
    """Deploy, then its rollback, then a notification when the run completes."""
    deploy = stage("Deploy")
    rollback = stage("undo", Hook(on=HookOn.ROLLBACK, of=deploy.uuid))
    notify = stage("tell", Hook(on=HookOn.COMPLETE))
    batches = [
        Batch(mode=BatchMode.LINEAR, contexts=[deploy]),
        Batch(mode=BatchMode.PARALLEL, contexts=[rollback]),
        Batch(mode=BatchMode.PARALLEL, contexts=[notify]),
    ]
    return Pipeline(batches=batches), deploy


def by_name(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for b in view["batches"] for c in b["contexts"]}


def test_hook_contexts_say_what_they_react_to(psm: Any) -> None:
    model, deploy = with_hooks()
    view = psm.get(psm.create(model).uuid)
    assert [b["hooks"] for b in view["batches"]] == [False, True, True]
    contexts = by_name(view)
    assert contexts["Deploy"]["hook"] is None
    assert contexts["undo"]["hook"] == {
        "on": "rollback",
        "of": deploy.uuid,
        "of_name": "Deploy",
        "outcome": None,
    }
    assert contexts["tell"]["hook"] == {
        "on": "complete",
        "of": None,
        "of_name": None,
        "outcome": None,
    }


def test_a_hook_not_triggered_says_what_it_saw(psm: Any) -> None:
    model, _ = with_hooks()
    uuid = psm.create(model).uuid
    view = drive(psm, uuid)
    check_pipeline(psm, uuid)
    undo, tell = by_name(view)["undo"], by_name(view)["tell"]
    assert (undo["state"], undo["reason"], undo["hook"]["outcome"]) == (
        "Skipped",
        "not_triggered",
        "Success",
    )
    assert (tell["state"], tell["hook"]["outcome"]) == ("Success", None)
