"""Pull and merge requests, and tag pushes: triggers of their own.

GitHub's and Gitea's `pull_request` events (`opened`, `synchronize` — Gitea says
`synchronized` —, `reopened` run; `closed` aborts the request's runs) and GitLab's
`Merge Request Hook` (`open`, `update` with new commits, `reopen` run; `close`, `merge`
abort) become a `Push` of the request's commit under the forge's ref for it
(`refs/pull/N/head`, GitLab's `refs/merge-requests/N/head`; `…/merge` and the merge
commit when the project builds the merge and the payload names one). The commit lives
in the base repository under that ref, a fork's too, so the Ottofile and the checkout
read it there. A tag push records its tag and runs even when its commit already ran.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from otto.endpoints import ApiError
from otto.limits import MAX_NAME, has_control
from otto.webhooks.inbox import Push
from otto.webhooks.projects import Project

SHA = frozenset("0123456789abcdef")
CLOSED = "closed"  # `details["action"]` of a push that aborts its request's runs
GITHUB_RUNS = frozenset({"opened", "synchronize", "synchronized", "reopened"})
GITLAB_RUNS = frozenset({"open", "update", "reopen"})
GITLAB_CLOSES = frozenset({"close", "merge"})
NO_MERGE_COMMIT = "the payload names no merge commit: the head commit is built"


@dataclass(frozen=True)
class PullRequest:
    """What a pull or merge request's payload says, whichever the forge."""

    number: int
    action: str
    closing: bool
    head_sha: str
    merge_sha: str | None
    source_branch: str
    target_branch: str
    fork: bool
    ref_prefix: str  # its refs in the base repository: `refs/pull/12/` + head or merge
    title: str | None
    author: str | None
    full_name: str | None  # the base repository's, for commit statuses


def as_tag(push: Push) -> Push:
    """A push to `refs/tags/…` is a tag trigger: it runs even when the commit ran."""
    if not push.ref.startswith("refs/tags/"):
        return push
    tag = push.ref.removeprefix("refs/tags/")
    return replace(push, event="tag", details={**(push.details or {}), "tag": tag}, force=True)


def request_refs(push: Push) -> tuple[str, str]:
    """The refs a request's runs are recorded under: its head and its merge."""
    prefix = push.ref.rsplit("/", 1)[0]
    return f"{prefix}/head", f"{prefix}/merge"


def is_closing(push: Push) -> bool:
    return push.event == "pull_request" and (push.details or {}).get("action") == CLOSED


def github_pull(
    project: Project, delivery: str, payload: dict[str, Any]
) -> tuple[Push | None, str]:
    """GitHub's (and Gitea's) `pull_request` event: the push to run, or None and why not."""
    action = _string(payload, "action", "action")
    if action not in GITHUB_RUNS and action != CLOSED:
        return None, f"pull_request action {action!r} is not handled"
    pr = _object(payload, "pull_request", "pull_request")
    head = _object(pr, "head", "pull_request.head")
    base = _object(pr, "base", "pull_request.base")
    number = pr.get("number", payload.get("number"))
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise _invalid("pull_request.number", "expected a positive integer")
    merge = pr.get("merge_commit_sha")
    base_repository = base.get("repo") or payload.get("repository")
    request = PullRequest(
        number=number,
        action=action,
        closing=action == CLOSED,
        head_sha=_sha(head, "sha", "pull_request.head.sha"),
        merge_sha=merge if _is_sha(merge) and not pr.get("merged") else None,
        source_branch=_branch(head, "ref", "pull_request.head.ref"),
        target_branch=_branch(base, "ref", "pull_request.base.ref"),
        fork=_repository(head.get("repo")) != _repository(base_repository),
        ref_prefix=f"refs/pull/{number}/",
        title=_first_line(pr.get("title")),
        author=_login(pr.get("user")) or _login(payload.get("sender")),
        full_name=_text(payload.get("repository"), "full_name"),
    )
    return request_push(project, delivery, request)


def gitlab_merge_request(
    project: Project, delivery: str, payload: dict[str, Any]
) -> tuple[Push | None, str]:
    """GitLab's `Merge Request Hook`: the push to run, or None and why not."""
    attributes = _object(payload, "object_attributes", "object_attributes")
    action = _string(attributes, "action", "object_attributes.action")
    if action not in GITLAB_RUNS | GITLAB_CLOSES:
        return None, f"merge request action {action!r} is not handled"
    number = attributes.get("iid")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise _invalid("object_attributes.iid", "expected a positive integer")
    if action == "update" and not attributes.get("oldrev"):
        return None, f"merge request !{number} updated without new commits"
    last = _object(attributes, "last_commit", "object_attributes.last_commit")
    merge = attributes.get("merge_commit_sha")
    user = payload.get("user")
    request = PullRequest(
        number=number,
        action=action,
        closing=action in GITLAB_CLOSES,
        head_sha=_sha(last, "id", "object_attributes.last_commit.id"),
        merge_sha=merge if _is_sha(merge) and action != "merge" else None,
        source_branch=_branch(attributes, "source_branch", "object_attributes.source_branch"),
        target_branch=_branch(attributes, "target_branch", "object_attributes.target_branch"),
        fork=attributes.get("source_project_id") != attributes.get("target_project_id"),
        ref_prefix=f"refs/merge-requests/{number}/",
        title=_first_line(attributes.get("title")),
        author=_text(user, "username") or _text(user, "name"),
        full_name=None,  # commit statuses go to GitHub's API (or Gitea's): not GitLab's
    )
    return request_push(project, delivery, request)


def request_push(project: Project, delivery: str, pr: PullRequest) -> tuple[Push | None, str]:
    """The push a request's event makes under the project's settings, or None and why."""
    if not project.pull_requests.enabled:
        return None, "pull requests are off (pull_requests.enabled: false)"
    if pr.fork and project.forks == "never":
        return None, f"pull request #{pr.number} comes from a fork (forks: never)"
    details: dict[str, Any] = {
        "number": pr.number,
        "source_branch": pr.source_branch,
        "target_branch": pr.target_branch,
        "fork": pr.fork,
        "head_sha": pr.head_sha,
        "action": CLOSED if pr.closing else pr.action,
    }
    ref, sha = f"{pr.ref_prefix}head", pr.head_sha
    if project.pull_requests.build == "merge" and not pr.closing:
        if pr.merge_sha:
            ref, sha = f"{pr.ref_prefix}merge", pr.merge_sha
        else:
            details["note"] = NO_MERGE_COMMIT
    push = Push(
        delivery,
        project.name,
        ref,
        sha,
        project.source.url,  # the project's spelling: one dedup key per repository
        pr.full_name,
        message=pr.title,
        pusher=pr.author,
        event="pull_request",
        details=details,
        force=pr.closing or not project.dedup_pull_requests,
    )
    return push, ""


def _repository(repo: Any) -> Any:
    """What names a repository: its full name (a deleted fork's head has none)."""
    return _text(repo, "full_name") or (repo.get("id") if isinstance(repo, dict) else None)


def _object(part: dict[str, Any], key: str, field: str) -> dict[str, Any]:
    value = part.get(key)
    if not isinstance(value, dict):
        raise _invalid(field, "expected an object")
    return value


def _string(part: dict[str, Any], key: str, field: str) -> str:
    value = part.get(key)
    if not isinstance(value, str) or not value:
        raise _invalid(field, "expected a string")
    return value


def _branch(part: dict[str, Any], key: str, field: str) -> str:
    value = _string(part, key, field)
    if len(value) > MAX_NAME or has_control(value):
        raise _invalid(field, f"at most {MAX_NAME} characters, no control characters")
    return value


def _sha(part: dict[str, Any], key: str, field: str) -> str:
    value = part.get(key)
    if not _is_sha(value):
        raise _invalid(field, "expected a commit SHA")
    return str(value)


def _is_sha(value: Any) -> bool:
    return isinstance(value, str) and len(value) in (40, 64) and set(value) <= SHA


def _login(user: Any) -> str | None:
    """GitHub's `login`, Gitea's `login` or `username`."""
    return _text(user, "login") or _text(user, "username")


def _text(part: Any, key: str) -> str | None:
    value = part.get(key) if isinstance(part, dict) else None
    return value if isinstance(value, str) and value else None


def _first_line(text: Any) -> str | None:
    return (text.split("\n", 1)[0].strip() or None) if isinstance(text, str) else None


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, "invalid_payload", f"{field}: {message}", field=field)
