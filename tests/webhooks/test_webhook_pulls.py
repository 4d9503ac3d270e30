"""Pull and merge request payloads → the push to run (or why not), tag pushes, the run
variables a claim hands the steps, and an untrusted run's isolation: the pure parts,
with the forges' documented payload shapes (the runs themselves:
test_webhook_pull_runs.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hookkit import merge_request_payload, pull_request_payload

from otto.endpoints import ApiError
from otto.isolation.policy import IsolationPolicy
from otto.model import Context
from otto.psm.records import run_variables
from otto.webhooks.inbox import Push
from otto.webhooks.projects import Project
from otto.webhooks.pulls import NO_MERGE_COMMIT, as_tag, github_pull, gitlab_merge_request

URL = "git://127.0.0.1:9/acme/app.git"
HEAD, MERGE = "a" * 40, "b" * 40


def project(**settings: Any) -> Project:
    return Project.model_validate(
        {"name": "app", "source": {"url": URL}, "secret_env": "S", **settings}
    )


def github(action: str = "opened", **extra: Any) -> dict[str, Any]:
    body = pull_request_payload(URL, "acme/app", 12, action, HEAD, "feature", **extra)
    return json.loads(body)


def test_an_opened_pull_request_runs_its_head_under_its_ref() -> None:
    push, why = github_pull(project(), "d-1", github())
    assert why == "" and push is not None
    assert (push.ref, push.sha, push.clone_url, push.full_name) == (
        "refs/pull/12/head", HEAD, URL, "acme/app"
    )  # fmt: skip
    assert (push.event, push.message, push.pusher, push.force) == (
        "pull_request", "Add the feature", "alice", True
    )  # fmt: skip
    assert push.details == {
        "number": 12, "source_branch": "feature", "target_branch": "main", "fork": False,
        "head_sha": HEAD, "action": "opened",
    }  # fmt: skip


def test_other_actions_are_ignored_by_name() -> None:
    assert github_pull(project(), "d", github("labeled")) == (
        None, "pull_request action 'labeled' is not handled"
    )  # fmt: skip
    body = json.loads(merge_request_payload(URL, "g/app", 3, "approved", HEAD, "f"))
    assert gitlab_merge_request(project(), "d", body)[1] == (
        "merge request action 'approved' is not handled"
    )


def test_a_closed_pull_request_asks_to_abort_and_a_fork_is_told() -> None:
    push, _ = github_pull(project(), "d", github("closed"))
    assert push is not None and push.details is not None and push.details["action"] == "closed"
    fork, _ = github_pull(project(), "d", github(head_full_name="mallory/app"))
    assert fork is not None and fork.details is not None and fork.details["fork"] is True
    assert fork.ref == "refs/pull/12/head"  # in the base repository, as forges keep it
    assert github_pull(project(forks="never"), "d", github(head_full_name="mallory/app")) == (
        None, "pull request #12 comes from a fork (forks: never)"
    )  # fmt: skip
    off = project(pull_requests={"enabled": False})
    assert github_pull(off, "d", github())[1] == (
        "pull requests are off (pull_requests.enabled: false)"
    )


def test_building_the_merge_uses_the_merge_commit_when_the_payload_names_one() -> None:
    merged = project(pull_requests={"build": "merge"})
    push, _ = github_pull(merged, "d", github(merge_commit_sha=MERGE))
    assert push is not None and push.details is not None
    assert (push.ref, push.sha, push.details["head_sha"]) == ("refs/pull/12/merge", MERGE, HEAD)
    head, _ = github_pull(merged, "d", github())  # GitHub computes it later: null at first
    assert head is not None and head.details is not None
    assert (head.ref, head.sha, head.details["note"]) == ("refs/pull/12/head", HEAD,
                                                          NO_MERGE_COMMIT)  # fmt: skip


def test_dedup_pull_requests_lets_an_already_built_commit_stand() -> None:
    push, _ = github_pull(project(dedup_pull_requests=True), "d", github())
    assert push is not None and push.force is False


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda p: p["pull_request"]["head"].update(sha="nope"), "pull_request.head.sha"),
        (lambda p: p["pull_request"].pop("head"), "pull_request.head"),
        (lambda p: p["pull_request"].update(number="12"), "pull_request.number"),
        (lambda p: p.pop("action"), "action"),
        (lambda p: p["pull_request"]["base"].update(ref="a\nb"), "pull_request.base.ref"),
    ],
)
def test_a_malformed_pull_request_is_a_422_naming_the_field(change: Any, field: str) -> None:
    payload = github()
    change(payload)
    with pytest.raises(ApiError) as refused:
        github_pull(project(), "d", payload)
    assert (refused.value.status, refused.value.message.split(":")[0]) == (422, field)


def test_gitlab_merge_requests() -> None:
    body = merge_request_payload(URL, "g/app", 3, "open", HEAD, "faster")
    push, _ = gitlab_merge_request(project(), "k", json.loads(body))
    assert push is not None and push.details is not None
    assert (push.ref, push.sha, push.pusher, push.message) == (
        "refs/merge-requests/3/head", HEAD, "bob", "Make it faster"
    )  # fmt: skip
    assert (push.details["number"], push.details["fork"]) == (3, False)
    update = merge_request_payload(URL, "g/app", 3, "update", HEAD, "faster")
    assert gitlab_merge_request(project(), "k", json.loads(update)) == (
        None, "merge request !3 updated without new commits"
    )  # fmt: skip
    pushed = merge_request_payload(URL, "g/app", 3, "update", HEAD, "f", oldrev=MERGE)
    assert gitlab_merge_request(project(), "k", json.loads(pushed))[0] is not None
    for closing in ("close", "merge"):
        body = merge_request_payload(URL, "g/app", 3, closing, HEAD, "f", fork=True)
        closed, _ = gitlab_merge_request(project(), "k", json.loads(body))
        assert closed is not None and closed.details is not None
        assert (closed.details["action"], closed.details["fork"]) == ("closed", True)


def test_a_tag_push_is_a_trigger_of_its_own() -> None:
    tag = as_tag(Push("d", "app", "refs/tags/v1.0", HEAD, URL, None))
    assert (tag.event, tag.details, tag.force) == ("tag", {"tag": "v1.0"}, True)
    branch = Push("d", "app", "refs/heads/main", HEAD, URL, None)
    assert as_tag(branch) is branch


def row(**columns: Any) -> dict[str, Any]:
    base = {"project": "app", "event": "push", "trigger_data": None, "ref": None, "sha": HEAD}
    return {**base, **columns}


def test_run_variables_say_what_started_the_run() -> None:
    assert run_variables(row(ref="refs/heads/main")) == {
        "OTTO_EVENT": "push", "OTTO_PROJECT": "app", "OTTO_SHA": HEAD, "OTTO_BRANCH": "main",
    }  # fmt: skip
    tag = row(event="tag", ref="refs/tags/v1.0", trigger_data='{"tag": "v1.0"}')
    assert run_variables(tag)["OTTO_TAG"] == "v1.0" and "OTTO_BRANCH" not in run_variables(tag)
    pr = row(
        event="pull_request",
        ref="refs/pull/12/head",
        trigger_data=json.dumps({"number": 12, "source_branch": "feature", "fork": True}),
    )
    assert (run_variables(pr)["OTTO_PR"], run_variables(pr)["OTTO_BRANCH"]) == ("12", "feature")
    manual = row(event="manual", trigger_data=json.dumps({"env": {"MODE": "fast", "a b": "x"}}))
    assert run_variables(manual)["MODE"] == "fast" and "a b" not in run_variables(manual)
    assert run_variables(row(project=None, event=None, sha=None)) == {}


def test_an_untrusted_context_never_runs_unsandboxed() -> None:
    plain = Context()
    unsandboxed = IsolationPolicy(sandbox="none")
    assert unsandboxed.refusal(plain) is None
    refusal = unsandboxed.refusal(plain, untrusted=True)
    assert refusal is not None and refusal.startswith("untrusted_unsandboxed: ")
    assert "fork" in refusal and "sandbox: none" in refusal
    sandboxed = IsolationPolicy(sandbox="bubblewrap", sandbox_problem=None)
    assert sandboxed.refusal(plain, untrusted=True) is None
