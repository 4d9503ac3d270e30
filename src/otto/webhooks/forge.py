"""What differs between the forges whose push hooks Otto takes: headers, how a
request proves it knows the secret, event names, where the repository is named."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from otto.webhooks.inbox import Push
from otto.webhooks.signature import verify as verify_github


@dataclass(frozen=True)
class Forge:
    name: str  # the path: /v1/webhooks/{name}
    secret_header: str
    verify: Callable[[bytes, bytes, str], bool]  # (secret, raw body, header) → genuine?
    event_header: str
    delivery_headers: tuple[str, ...]  # the first one present identifies the delivery
    push_events: frozenset[str]
    ping_events: frozenset[str]
    repository_field: str  # where the payload names the repository
    names: Callable[[dict[str, Any]], set[str] | None]  # the repository's URLs and names
    push: Callable[[Any, str, dict[str, Any]], tuple[Push | None, str]]
    clone_url_at: str = "repository.clone_url"  # the URL matched against `source.url`
    content_types: tuple[str, ...] = ("application/json",)  # bodies it sends; others: 415
    pull_events: frozenset[str] = frozenset()  # pull (merge) request events
    pull: Callable[[Any, str, dict[str, Any]], tuple[Push | None, str]] | None = None

    def clone_url(self, payload: dict[str, Any]) -> tuple[str, str | None]:
        """Where the payload names the repository's clone URL, and that URL."""
        value: Any = payload
        for key in self.clone_url_at.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return self.clone_url_at, value if isinstance(value, str) else None

    def delivery(self, headers: Any) -> str:
        for name in self.delivery_headers:
            value = headers.get(name, "").strip()
            if value:
                return value if self.name == "github" else f"{self.name}:{value}"
        return ""


def verify_hex(secret: bytes, body: bytes, header: str) -> bool:
    """Gitea: `X-Gitea-Signature` is the bare hex HMAC-SHA256 of the body."""
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().lower().encode())


def verify_token(secret: bytes, body: bytes, header: str) -> bool:
    """GitLab: `X-Gitlab-Token` is the secret itself (compared in constant time)."""
    return hmac.compare_digest(secret, header.encode())


def verify_signature(secret: bytes, body: bytes, header: str) -> bool:
    return verify_github(secret, body, header)


def repository_names(payload: dict[str, Any]) -> set[str] | None:
    """GitHub and Gitea: `repository.clone_url` and friends."""
    repository = payload.get("repository")
    if not isinstance(repository, dict):
        return None
    keys = ("clone_url", "html_url", "full_name", "ssh_url")
    return {v for k in keys if isinstance(v := repository.get(k), str)}
