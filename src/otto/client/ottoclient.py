"""`OttoClient`: the Otto server's HTTP API as typed Python calls.

Every call raises `ClientError` (or a subclass) with the server's own message
when it fails; documents come back as the JSON the server sent.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from otto.client.errors import ClientError, ServerUnavailable, UsageProblem, error_from
from otto.client.sse import EventStream
from otto.httpclient import backoff, connect, problem

Json = dict[str, Any]
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# How many of the newest runs a short uuid prefix is looked up among.
PREFIX_SEARCH_LIMIT = 5000
CREATE_RETRY_SECONDS = 30.0  # how long a create whose answer was lost is sent again
TRIGGER_TIMEOUT = 150.0  # the server asks the repository (git, up to a minute) first


@dataclass(frozen=True)
class Page:
    pipelines: list[Json]
    next_cursor: str | None


@dataclass(frozen=True)
class Created:
    uuid: str
    duplicate: bool = False


class OttoClient:
    """A connection to one Otto server; `token` is sent as `Authorization: Bearer`."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        if "://" not in base_url:
            example = f"http://{base_url or '127.0.0.1:7670'}"
            raise UsageProblem(f"--server {base_url}: a URL needs its scheme, e.g. {example}")
        try:
            self.http = connect(
                base_url,
                token,
                agent="cli",
                timeout=timeout,
                headers={"Accept": "application/json"},
            )
        except (httpx.InvalidURL, ValueError) as exc:
            raise UsageProblem(f"--server {base_url}: not a server URL ({exc})") from None
        if self.http.base_url.scheme not in ("http", "https") or not self.http.base_url.host:
            raise UsageProblem(
                f"--server {base_url}: not a server URL (want e.g. http://127.0.0.1:7670)"
            )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> OttoClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- pipelines -----------------------------------------------------------------
    def health(self) -> Json:
        return self._json("GET", "/health")

    def pipelines(
        self,
        state: str | None = None,
        repo: str | None = None,
        ref: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        project: str | None = None,
    ) -> Page:
        params = {
            "state": state,
            "repo": repo,
            "ref": ref,
            "project": project,
            "limit": limit,
            "cursor": cursor,
        }
        found = self._json("GET", "/v1/pipelines", params=_present(params))
        return Page(found["pipelines"], found.get("next_cursor"))

    def pipeline(self, uuid: str) -> Json:
        return self._json("GET", f"/v1/pipelines/{_segment(uuid)}")

    def transitions(self, uuid: str) -> list[Json]:
        return list(self._json("GET", f"/v1/pipelines/{_segment(uuid)}/transitions")["transitions"])

    def replay(self, uuid: str) -> Json:
        """A run's states re-derived from its transition log and compared with the stored
        ones: `{"consistent", "differences": [...]}`."""
        return self._json("GET", f"/v1/pipelines/{_segment(uuid)}/replay")

    def create(
        self,
        ottofile: str | None = None,
        model: Json | None = None,
        repo: str | None = None,
        ref: str | None = None,
        sha: str | None = None,
        force: bool = False,
        trigger: str | None = None,
        idempotency_key: str | None = None,
    ) -> Created:
        """Create a pipeline; `idempotency_key` (default: a fresh one) makes retries safe."""
        body = _present(
            {
                "ottofile": ottofile,
                "model": model,
                "repo": repo,
                "ref": ref,
                "sha": sha,
                "trigger": trigger,
            }
        )
        if force:
            body["force"] = True
        found = self._create(body, idempotency_key or uuid.uuid4().hex)
        return Created(str(found["uuid"]), bool(found.get("duplicate", False)))

    def _create(self, body: Json, key: str) -> Json:
        """POST /v1/pipelines with an `Idempotency-Key`, again with the same key when the
        answer was lost (the connection dropped after the request went out, the server
        restarted, or was too busy): the server answers a retry as it answered the first
        request, so one run is made however often it is sent. A server never reached at
        all fails at once, as any other call does."""
        headers = {"Idempotency-Key": key}
        deadline = time.monotonic() + CREATE_RETRY_SECONDS
        reached = False
        for pause in backoff(0.2):
            try:
                response = self.http.post("/v1/pipelines", json=body, headers=headers)
            except httpx.ConnectError as exc:
                if not reached or time.monotonic() > deadline:
                    raise ServerUnavailable(
                        f"cannot reach the Otto server at {self.base_url}: {_reason(exc)}"
                    ) from None
            except httpx.TransportError as exc:  # sent, perhaps acted on: the answer is lost
                reached = True
                if time.monotonic() > deadline:
                    raise ServerUnavailable(
                        f"the Otto server at {self.base_url} gave no answer: {_reason(exc)}"
                    ) from None
            else:
                if response.status_code != 503 or time.monotonic() > deadline:
                    if response.status_code >= 400:
                        raise error_from(response)
                    found = response.json()
                    if not isinstance(found, dict):
                        raise ServerUnavailable("POST /v1/pipelines: unexpected JSON")
                    return found
                reached = True
            time.sleep(pause)
        raise AssertionError("backoff never ends")

    def abort(self, uuid: str) -> Json:
        return self._json("POST", f"/v1/pipelines/{_segment(uuid)}/abort")

    def answer(
        self, uuid: str, context: str, approve: bool, by: str | None = None,
        comment: str | None = None, params: dict[str, str] | None = None,
    ) -> Json:  # fmt: skip
        """Approve or reject a context Waiting at its gate's input (`context`: its uuid or
        stage name); `params`: the values the input asks for (approving)."""
        verb = "approve" if approve else "reject"
        path = f"/v1/pipelines/{_segment(uuid)}/contexts/{_segment(context)}/{verb}"
        body = _present({"by": by, "comment": comment, "params": params or None})
        return self._json("POST", path, json=body)

    def retry(self, uuid: str, every: bool = False) -> Json:
        """Run a finished run's failed contexts again (`every`: all of its contexts)."""
        params = {"all": "true"} if every else None
        return self._json("POST", f"/v1/pipelines/{_segment(uuid)}/retry", params=params)

    def trigger(
        self,
        project: str,
        ref: str | None = None,
        sha: str | None = None,
        env: dict[str, str] | None = None,
        by: str | None = None,
    ) -> Json:
        """Start a run of `project`'s repository at `ref` or `sha` (its default branch when
        neither): `{"uuid", "sha", "ref"}`."""
        body = _present({"ref": ref, "sha": sha, "env": env or None, "by": by})
        path = f"/v1/projects/{_segment(project)}/runs"
        return self._json("POST", path, json=body, timeout=TRIGGER_TIMEOUT)

    def gc(self, dry_run: bool) -> Json:
        """Free what the server's retention policy lets go (`dry_run`: only list it)."""
        return self._json("POST", "/v1/gc", json={"dry_run": dry_run})

    def credentials(self) -> Json:
        """Every credential's name, scope, who set it and when (never a value)."""
        return self._json("GET", "/v1/credentials")

    def set_credential(self, name: str, value: str, project: str | None, by: str | None) -> Json:
        body = _present({"value": value, "project": project})
        headers = {"X-Otto-User": by} if by else {}
        return self._json("PUT", f"/v1/credentials/{_segment(name)}", json=body, headers=headers)

    def remove_credential(self, name: str, project: str | None) -> Json:
        params = _present({"project": project})
        return self._json("DELETE", f"/v1/credentials/{_segment(name)}", params=params)

    def resolve(self, ident: str) -> str:
        """The full uuid of the run `ident` names: a whole uuid, or a unique prefix of one
        among the newest runs."""
        wanted = ident.strip().lower()
        if UUID_RE.match(wanted):
            return wanted
        if not wanted or not re.fullmatch(r"[0-9a-f-]+", wanted):
            raise ClientError(f"{ident!r} is not a pipeline uuid or a prefix of one")
        matches: list[str] = []
        cursor: str | None = None
        seen = 0
        while seen < PREFIX_SEARCH_LIMIT:
            page = self.pipelines(limit=500, cursor=cursor)
            seen += len(page.pipelines)
            matches += [p["uuid"] for p in page.pipelines if p["uuid"].startswith(wanted)]
            if len(matches) > 1:
                shown = ", ".join(m[:13] for m in matches[:5])
                raise ClientError(f"{ident!r} names more than one pipeline: {shown}…")
            cursor = page.next_cursor
            if cursor is None:
                break
        if not matches:
            raise ClientError(f"no pipeline {ident}", status=404, code="not_found")
        return matches[0]

    # -- events --------------------------------------------------------------------
    def events(self, after: int = 0, pipeline: str | None = None, limit: int = 1000) -> list[Json]:
        params = _present({"after": after, "pipeline": pipeline, "limit": limit})
        return list(self._json("GET", "/v1/events", params=params)["events"])

    def all_events(self, after: int = 0, pipeline: str | None = None) -> Iterator[Json]:
        """Every transition after `after` there is now, fetched page by page."""
        while batch := self.events(after, pipeline):
            yield from batch
            after = int(batch[-1]["seq"])

    def stream_events(
        self, after: int = 0, pipeline: str | None = None, give_up_after: float = 30.0
    ) -> EventStream:
        """Transitions after `after` as they happen (SSE), resuming after a dropped
        connection from the last one seen. Iterating it never ends by itself."""
        return EventStream(self.http, after, pipeline, give_up_after)

    # -- objects -------------------------------------------------------------------
    def objects(self, prefix: str) -> list[Json]:
        return list(self._request("GET", "/v1/objects", params={"prefix": prefix}).json())

    def download(self, key: str, out: BinaryIO) -> None:
        """Write an object to `out` as it streams in."""
        path = "/v1/objects/" + quote(key, safe="/")
        try:
            with self.http.stream("GET", path) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_from(response)
                for chunk in response.iter_bytes():
                    out.write(chunk)
        except httpx.TransportError as exc:
            raise ServerUnavailable(
                f"cannot reach the Otto server at {self.base_url}: {_reason(exc)}"
            ) from None

    def read_object(self, key: str, offset: int = 0, tail: int | None = None) -> bytes | None:
        """An object's bytes from `offset` on (or its last `tail` bytes); b"" when there is
        nothing past `offset` yet, None when there is no such object (yet)."""
        headers = {}
        if tail is not None:
            headers["Range"] = f"bytes=-{max(1, tail)}"
        elif offset:
            headers["Range"] = f"bytes={offset}-"
        path = "/v1/objects/" + quote(key, safe="/")
        try:
            return self._request("GET", path, headers=headers).content
        except ClientError as exc:
            if exc.status == 404:
                return None
            if exc.status == 416:
                return b""
            raise

    # -- plumbing ------------------------------------------------------------------
    def _json(self, method: str, path: str, **kwargs: Any) -> Json:
        response = self._request(method, path, **kwargs)
        try:
            found = response.json()
        except ValueError:
            raise ServerUnavailable(
                f"{method} {path}: the server answered something that is not JSON"
            ) from None
        if not isinstance(found, dict):
            raise ServerUnavailable(f"{method} {path}: the server answered unexpected JSON")
        return found

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ServerUnavailable(
                f"the Otto server at {self.base_url} did not answer in time"
            ) from None
        except httpx.TransportError as exc:
            raise ServerUnavailable(
                f"cannot reach the Otto server at {self.base_url}: {_reason(exc)}"
            ) from None
        if response.status_code >= 400:
            raise error_from(response)
        return response


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _segment(uuid: str) -> str:
    return quote(uuid, safe="")


def _reason(exc: httpx.TransportError) -> str:
    text = problem(exc)
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused (is `otto server` running?)"
    return text
