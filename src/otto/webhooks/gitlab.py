"""GitLab push hooks (`X-Gitlab-Event: Push Hook` / `Tag Push Hook`): the payload's
`ref`, `before`, `after`, `checkout_sha`, `project.git_http_url`,
`project.path_with_namespace`, `commits` and `user_username`."""

from __future__ import annotations

from typing import Any

from otto.endpoints import ApiError
from otto.limits import MAX_NAME, has_control
from otto.webhooks.inbox import Push
from otto.webhooks.projects import Project
from otto.webhooks.pulls import as_tag

SHA = frozenset("0123456789abcdef")


def gitlab_names(payload: dict[str, Any]) -> set[str] | None:
    project = payload.get("project")
    if not isinstance(project, dict):
        return None
    keys = ("git_http_url", "git_ssh_url", "http_url", "web_url", "path_with_namespace")
    return {v for k in keys if isinstance(v := project.get(k), str)}


def gitlab_push(
    project: Project, delivery: str, payload: dict[str, Any]
) -> tuple[Push | None, str]:
    """The push to run, or None and why it is ignored; 422 for a malformed payload."""
    ref, after = payload.get("ref"), payload.get("after")
    if not isinstance(ref, str) or not ref.startswith("refs/"):
        raise ApiError(422, "invalid_payload", "ref: expected refs/…", field="ref")
    if len(ref) > MAX_NAME or has_control(ref):
        message = f"ref: at most {MAX_NAME} characters, no control characters"
        raise ApiError(422, "invalid_payload", message, field="ref")
    if not _is_sha(after):
        raise ApiError(422, "invalid_payload", "after: expected a commit SHA", field="after")
    if set(after) == {"0"}:
        return None, f"{ref} was deleted"
    sha = payload.get("checkout_sha") or after
    if not _is_sha(sha):
        raise ApiError(422, "invalid_payload", "checkout_sha: expected a commit SHA",
                       field="checkout_sha")  # fmt: skip
    if not project.wants(ref):
        return None, f"{ref} is outside the refspec {project.source.refspec}"
    commits = payload.get("commits")
    found = [c for c in commits if isinstance(c, dict)] if isinstance(commits, list) else []
    message = next((c.get("message") for c in found if c.get("id") == sha), None)
    pusher = payload.get("user_username") or payload.get("user_name")
    push = Push(
        delivery,
        project.name,
        ref,
        sha,
        project.source.url,  # the project's spelling: one dedup key per repository
        None,  # commit statuses go to GitHub's API (or Gitea's): not GitLab's
        message=(message.split("\n", 1)[0] or None) if isinstance(message, str) else None,
        pusher=pusher if isinstance(pusher, str) and pusher else None,
    )
    return as_tag(push), ""


def _is_sha(value: Any) -> bool:
    return isinstance(value, str) and len(value) in (40, 64) and set(value) <= SHA
