"""The PSM's executor interface and the auction over HTTP, for a remote orchestrator.

`ServerApi` is the connection, to one of the replicas it is given (the next when that one
stops answering: they share one database, so any may take any call); `HttpExecutor` is
`orchestrator.Executor` against `otto server`'s API (`otto.psm.executor_routes`): the
same calls, the same errors (`Conflict`, `StaleLease`, `NotFound`); `HttpBids` answers
auctions. A report
that cannot reach the server (it restarts, the network hiccups) is retried
for a while: whether it still counts is then the lease's to decide.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from otto.httpclient import Unauthorized, backoff, connect, problem, read_error
from otto.model import Checkout, Context
from otto.psm import Conflict, Lease, NotFound, StaleLease
from otto.psm.records import WorkOrder
from otto.status import Status

AGENT = "orchestrator"  # its User-Agent: otto-orchestrator/VERSION
RETRY_FOR = 60.0  # seconds a report keeps trying to reach the server


__all__ = [
    "HttpBids",
    "HttpExecutor",
    "ServerApi",
    "ServerUnreachable",
    "Unauthorized",
    "server_urls",
]


class ServerUnreachable(Exception):
    """No answer from the server, or a server error, for longer than allowed."""


class ServerApi:
    """An HTTP connection to an `otto server`, with the token, retries and error mapping.

    `servers`: one URL, or the URLs of replicas sharing one database (a list, or comma
    separated); calls go to one of them, and to the next when it cannot be reached or
    answers with a server error."""

    def __init__(
        self, servers: str | Sequence[str], token: str | None = None, timeout: float = 10.0
    ) -> None:
        self.servers = server_urls(servers)
        self.token = token
        self.timeout = timeout
        self._lock = threading.Lock()
        self._current = 0
        self._retired: list[httpx.Client] = []  # clients of servers failed over from
        self.http = connect(self.base_url, token, agent=AGENT, timeout=timeout)

    @property
    def base_url(self) -> str:
        return self.servers[self._current]

    def fail_over(self, failed: str) -> None:
        """`failed` did not answer: the next server takes the calls (unless one did already)."""
        with self._lock:
            if failed != self.base_url or len(self.servers) == 1:
                return
            self._current = (self._current + 1) % len(self.servers)
            # In-flight calls of other threads may still use the old client: closed at the end.
            self._retired.append(self.http)
            self.http = connect(self.base_url, self.token, agent=AGENT, timeout=self.timeout)

    def close(self) -> None:
        for client in [*self._retired, self.http]:
            client.close()

    def connection(self, timeout: httpx.Timeout) -> httpx.Client:
        """Another connection to the same server, with its own timeouts (for a stream)."""
        return connect(self.base_url, self.token, agent=AGENT, timeout=timeout)

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, retry_for: float = 0.0
    ) -> Any:
        """The JSON answer; 4xx become exceptions; transport and 5xx errors retried."""
        deadline = time.monotonic() + retry_for
        for pause in backoff(0.05):
            server, http = self.base_url, self.http
            try:
                response = http.request(method, path, json=body)
            except httpx.TransportError as exc:
                failure = f"{method} {path}: {problem(exc)}"
            else:
                if response.status_code < 500:
                    return json_answer(response)
                failure = f"{method} {path}: HTTP {response.status_code}"
            self.fail_over(server)
            if time.monotonic() + pause > deadline:
                raise ServerUnreachable(failure)
            time.sleep(pause)
        raise AssertionError("backoff never ends")


def server_urls(servers: str | Sequence[str]) -> list[str]:
    """The server URLs of `--server` (comma separated, or a list), without trailing slashes."""
    listed = servers.split(",") if isinstance(servers, str) else servers
    urls = [url.strip().rstrip("/") for url in listed if url.strip()]
    if not urls:
        raise ValueError("no server URL")
    return urls


def json_answer(response: httpx.Response) -> Any:
    """The JSON of a success; a refusal as the `Executor` interface's errors."""
    if response.status_code < 400:
        try:
            return response.json()
        except ValueError:
            return {}
    answer = read_error(response)
    message = answer.message or f"HTTP {answer.status}"
    if answer.status == 401:
        raise Unauthorized(message)
    if answer.status == 404:
        raise NotFound(message)
    if answer.status == 409:
        kind = StaleLease if answer.code == "stale_lease" else Conflict
        raise kind(message, answer.details.get("current"))
    raise ValueError(f"{response.request.method} {response.request.url.path}: {message}")


def _lease(data: dict[str, Any]) -> Lease:
    return Lease(
        pipeline=data["pipeline"],
        context=data["context"],
        orchestrator=data["orchestrator"],
        epoch=int(data["epoch"]),
        expires_at=float(data["expires_at"]),
        aborting=bool(data.get("aborting", False)),
        deadline=float(data["deadline"]) if data.get("deadline") is not None else None,
    )


def _work_order(data: dict[str, Any]) -> WorkOrder:
    checkout = Checkout.model_validate(data["checkout"]) if data.get("checkout") else None
    variables = {str(k): str(v) for k, v in (data.get("variables") or {}).items()}
    untrusted = data.get("untrusted") is True
    credentials = {str(k): str(v) for k, v in (data.get("credentials") or {}).items()}
    denied = str(data["denied"]) if data.get("denied") else None
    model = Context.model_validate(data["model"])
    return WorkOrder(_lease(data), model, checkout, variables, untrusted, credentials, denied)


class HttpExecutor:
    """`Executor` over the HTTP API (claim, renew, reports, give back)."""

    def __init__(self, api: ServerApi, retry_for: float = RETRY_FOR) -> None:
        self.api = api
        self.retry_for = retry_for

    def claim_work(
        self, context: str, orchestrator: str, isolation: str | None = None
    ) -> WorkOrder:
        path = f"/v1/contexts/{_q(context)}/claim"
        body = {"orchestrator": orchestrator, "isolation": isolation}
        return _work_order(self.api.call("POST", path, body, 10.0))

    def renew(self, lease: Lease) -> Lease:
        return _lease(self.api.call("POST", self._path(lease, "lease"), _ref(lease)))

    def release(self, context: str, orchestrator: str) -> None:
        body = {"orchestrator": orchestrator}
        self.api.call("POST", f"/v1/contexts/{_q(context)}/release", body, 5.0)

    def hand_back(self, lease: Lease) -> None:
        self.api.call("POST", self._path(lease, "hand-back"), _ref(lease), 5.0)

    def step_started(self, lease: Lease, step: str) -> None:
        path = self._path(lease, f"steps/{_q(step)}/started")
        self.api.call("POST", path, _ref(lease), self.retry_for)

    def step_finished(
        self,
        lease: Lease,
        step: str,
        exit_code: int | None = None,
        status: Status | None = None,
        reason: str | None = None,
    ) -> Status:
        body = {**_ref(lease), "exit_code": exit_code, "status": status, "reason": reason}
        path = self._path(lease, f"steps/{_q(step)}/finished")
        return Status(self.api.call("POST", path, body, self.retry_for)["status"])

    def context_finished(
        self,
        lease: Lease,
        status: Status,
        reason: str | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> None:
        body = {**_ref(lease), "status": status, "reason": reason, "variables": variables or {}}
        self.api.call("POST", self._path(lease, "finished"), body, self.retry_for)

    @staticmethod
    def _path(lease: Lease, action: str) -> str:
        return f"/v1/contexts/{_q(lease.context)}/{action}"


class HttpBids:
    """`Bids` over the HTTP API: an answer to an auction, and "I have room again"."""

    def __init__(self, api: ServerApi, name: str) -> None:
        self.api = api
        self.name = name

    def bid(self, auction_id: int, orchestrator: str, costs: dict[str, float]) -> bool:
        body = {"orchestrator": orchestrator, "costs": costs}
        try:
            self.api.call("POST", f"/v1/auctions/{auction_id}/bids", body)
        except Conflict:
            return False  # too late: the auction closed
        return True

    def poke(self) -> None:
        # Not (yet) registered again, or no server: registering auctions anyway.
        with contextlib.suppress(Exception):
            self.api.call("POST", f"/v1/orchestrators/{_q(self.name)}/poke")


def _ref(lease: Lease) -> dict[str, Any]:
    return {"orchestrator": lease.orchestrator, "epoch": lease.epoch}


def _q(part: str) -> str:
    return quote(part, safe="")
