"""The PSM's executor interface and the auction over HTTP, for a remote orchestrator.

`HttpExecutor` is `orchestrator.Executor` against `otto server`'s API: the
same calls, the same errors (`Conflict`, `StaleLease`, `NotFound`). A report
that cannot reach the server (it restarts, the network hiccups) is retried
for a while: whether it still counts is then the lease's to decide.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import quote

import httpx

from otto import __version__
from otto.agent.invocation import Checkout
from otto.model import Context
from otto.model import load as load_pipeline
from otto.psm import Conflict, Lease, NotFound, StaleLease
from otto.status import Status

RETRY_FOR = 60.0  # seconds a report keeps trying to reach the server
MODELS = 256  # context models kept


class Unauthorized(Exception):
    """The server refused the token (or wants one)."""


class ServerUnreachable(Exception):
    """No answer from the server, or a server error, for longer than allowed."""


class ServerApi:
    """An HTTP connection to one `otto server`, with the token, retries and error mapping."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10.0) -> None:
        headers = {"User-Agent": f"otto-orchestrator/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self.headers = headers
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, retry_for: float = 0.0
    ) -> Any:
        """The JSON answer; 4xx become exceptions; transport and 5xx errors retried."""
        deadline = time.monotonic() + retry_for
        pause = 0.05
        while True:
            try:
                response = self.http.request(method, path, json=body)
            except httpx.TransportError as exc:
                problem = f"{method} {path}: {exc or type(exc).__name__}"
            else:
                if response.status_code < 500:
                    return json_answer(response)
                problem = f"{method} {path}: HTTP {response.status_code}"
            if time.monotonic() + pause > deadline:
                raise ServerUnreachable(problem)
            time.sleep(pause)
            pause = min(pause * 2, 2.0)


def json_answer(response: httpx.Response) -> Any:
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code < 400:
        return data
    error = data.get("error", {}) if isinstance(data, dict) else {}
    message = str(error.get("message") or f"HTTP {response.status_code}")
    if response.status_code == 401:
        raise Unauthorized(message)
    if response.status_code == 404:
        raise NotFound(message)
    if response.status_code == 409:
        kind = StaleLease if error.get("code") == "stale_lease" else Conflict
        raise kind(message, error.get("current"))
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


class HttpExecutor:
    """`Executor` over the HTTP API (claim, renew, reports, hand back, the context's model)."""

    def __init__(self, api: ServerApi, retry_for: float = RETRY_FOR) -> None:
        self.api = api
        self.retry_for = retry_for
        self._models: OrderedDict[str, Context] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, context: Context) -> None:
        """A context's model, as an award brought it: no request when it starts."""
        with self._lock:
            self._models[context.uuid] = context
            while len(self._models) > MODELS:
                self._models.popitem(last=False)

    def claim(self, context: str, orchestrator: str, isolation: str | None = None) -> Lease:
        path = f"/v1/contexts/{_q(context)}/claim"
        body = {"orchestrator": orchestrator, "isolation": isolation}
        return _lease(self.api.call("POST", path, body, 10.0))

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

    def context_finished(self, lease: Lease, status: Status, reason: str | None = None) -> None:
        body = {**_ref(lease), "status": status, "reason": reason}
        self.api.call("POST", self._path(lease, "finished"), body, self.retry_for)

    def context_model(self, pipeline: str, context: str) -> Context:
        with self._lock:
            known = self._models.pop(context, None)
        if known is not None:
            return known
        run = self.api.call("GET", f"/v1/pipelines/{_q(pipeline)}", retry_for=10.0)
        found = next((c for c in load_pipeline(run["model"]).contexts() if c.uuid == context), None)
        if found is None:
            raise NotFound(f"no context {context} in pipeline {pipeline}")
        return found

    def checkout(self, pipeline: str) -> Checkout | None:
        """The commit the run's workspaces start from (a run from a push), if any."""
        found = self.api.call("GET", f"/v1/pipelines/{_q(pipeline)}/checkout", retry_for=10.0)
        return Checkout.model_validate(found["checkout"]) if found.get("checkout") else None

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
