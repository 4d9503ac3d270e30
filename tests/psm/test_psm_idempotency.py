"""`create` with an idempotency key: on both backends, the first
request's outcome is stored with the run it created, in one transaction, and a retry
gets it back, also from a store reopened as after a crash."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from psmkit import make_pipeline

from otto.psm import About, PipelineStateMachine
from otto.psm.machine import IdempotencyKeyReused


def test_a_retry_with_the_same_key_gets_the_first_answer(
    open_psm: Callable[..., PipelineStateMachine],
) -> None:
    psm = open_psm()
    first = psm.create(make_pipeline(("Linear", [1])), idempotency=("key-1", "body-a"))
    assert not first.replayed and not first.duplicate
    again = psm.create(make_pipeline(("Linear", [1])), idempotency=("key-1", "body-a"))
    assert (again.uuid, again.duplicate, again.replayed) == (first.uuid, False, True)
    assert len(psm.list()[0]) == 1

    psm.close()  # as a crash would leave it: the key was committed with the run
    reopened = open_psm()
    after = reopened.create(make_pipeline(("Linear", [1])), idempotency=("key-1", "body-a"))
    assert (after.uuid, after.replayed) == (first.uuid, True)
    assert len(reopened.list()[0]) == 1


def test_a_key_reused_for_another_request_is_refused(psm: PipelineStateMachine) -> None:
    psm.create(make_pipeline(("Linear", [1])), idempotency=("key-2", "body-a"))
    with pytest.raises(IdempotencyKeyReused):
        psm.create(make_pipeline(("Linear", [1])), idempotency=("key-2", "body-b"))
    assert len(psm.list()[0]) == 1


def test_a_duplicate_commit_is_replayed_as_a_duplicate(psm: PipelineStateMachine) -> None:
    known = psm.create(make_pipeline(("Linear", [1])), repo="r", sha="a" * 40)
    dup = psm.create(
        make_pipeline(("Linear", [1])), repo="r", sha="a" * 40, idempotency=("key-3", "x")
    )
    assert (dup.uuid, dup.duplicate) == (known.uuid, True)
    again = psm.create(
        make_pipeline(("Linear", [1])), repo="r", sha="a" * 40, idempotency=("key-3", "x")
    )
    assert (again.uuid, again.duplicate, again.replayed) == (known.uuid, True, True)


def test_a_long_message_is_cut_and_marked(psm: PipelineStateMachine) -> None:
    model = make_pipeline(("Linear", [1]))
    psm.create(model, about=About("p", "t" * 1000, "m" * 100_000))
    run = psm.get(model.uuid)
    assert len(run["message"].encode()) <= 4096 and run["message"].endswith("… [truncated]")
    assert len(run["trigger"]) <= 255 and run["trigger"].endswith("… [truncated]")


def test_credentials_in_a_repo_url_are_never_shown(psm: PipelineStateMachine) -> None:
    model = make_pipeline(("Linear", [1]))
    repo = "https://alice:s3cret@git.example.com/app.git"
    psm.create(model, repo=repo, sha="b" * 40)
    shown = "https://***@git.example.com/app.git"
    assert psm.get(model.uuid)["repo"] == shown
    assert psm.list()[0][0]["repo"] == shown
    assert psm.transitions(model.uuid)[0].data == {"repo": shown, "ref": None, "sha": "b" * 40}
    # The dedup key is the repository as given: the same commit is still one run.
    dup = psm.create(make_pipeline(("Linear", [1])), repo=repo, sha="b" * 40)
    assert dup.duplicate and dup.uuid == model.uuid
