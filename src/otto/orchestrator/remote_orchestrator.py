"""`otto orchestrator --server URL`: an orchestrator on its own machine.

It registers with the server (`POST /v1/orchestrators`), listens on its
message stream (`otto.auction.remote_bidder` describes the messages), bids, claims
what it wins and runs it with local agents through the same `Orchestrator`
as the server's own, reporting over HTTP (`HttpExecutor`); an abort of a context it
runs comes on the same stream (`moved`) and stops its agent at once. The agents write
logs and artifacts to the server's object store. When the stream drops (the
server restarts) it registers again and carries on; what it runs meanwhile
keeps running and reporting. `--server URL1,URL2,…` names replicas sharing one database:
when the one it uses stops answering (connection refused, the stream dropped and no
new one taken), it registers with the next, and its leases' renewals and reports go there
(the awards it holds are in the database, so the new replica tells it of them again).
SIGTERM/SIGINT: leave the auction, let running contexts finish within the grace period,
hand the rest back.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from otto.agent.invocation import DEFAULT_MAX_LOG_BYTES
from otto.auction import Auction, Lot
from otto.housekeeping.workspaces import WorkspaceSweeper
from otto.isolation.policy import IsolationPolicy
from otto.orchestrator.orchestrator import Orchestrator
from otto.orchestrator.server_api import (
    HttpBids,
    HttpExecutor,
    ServerApi,
    ServerUnreachable,
    Unauthorized,
    json_answer,
)
from otto.psm import Conflict, NotFound
from otto.psm.states import ABORTING
from otto.sse import SseParser

log = logging.getLogger("otto.orchestrator.remote")

READ_TIMEOUT = 35.0  # the server sends a keep-alive every 10 s
EX_USAGE, EX_NOPERM = 64, 77


@dataclass(frozen=True)
class RemoteSettings:
    server: str  # a URL, or replicas' URLs comma separated (`ServerApi`)
    name: str
    workspace: Path
    isolation: IsolationPolicy  # how its agents isolate steps (otto.isolation.policy)
    token: str | None = None
    labels: str | None = None
    capacity: int = 4
    cost_factor: float = 1.0
    grace: float = 30.0
    max_log_bytes: int = DEFAULT_MAX_LOG_BYTES  # a step log's limit (otto.config)
    sweep_interval: float = 30.0  # seconds between sweeps of its workspaces (otto.config)


def objects_url(servers: list[str], token: str | None) -> str:
    """The object store the agents write to: the server's, with the token (masked in logs);
    `known_up`: through a server restart, the agents keep trying to store their logs;
    `also`: the other replicas, which they turn to when the first cannot be reached."""
    secret = f"&token={quote(token, safe='')}" if token else ""
    others = f"&also={quote(','.join(servers[1:]), safe='')}" if len(servers) > 1 else ""
    return f"{servers[0]}?known_up=1{others}{secret}"


class RemoteOrchestrator:
    def __init__(self, settings: RemoteSettings) -> None:
        self.settings = settings
        self.api = ServerApi(settings.server, settings.token)
        self.executor = HttpExecutor(self.api)
        self.orchestrator = Orchestrator(
            self.executor,
            HttpBids(self.api, settings.name),
            objects_url(self.api.servers, settings.token),
            settings.workspace,
            name=settings.name,
            capacity=settings.capacity,
            cost_factor=settings.cost_factor,
            labels=settings.labels,
            isolation=settings.isolation,
            max_log_bytes=settings.max_log_bytes,
            masked=lambda: [
                *([settings.token] if settings.token else []),
                *settings.isolation.secret_values(),
            ],
        )
        # Its workspaces of completed runs go when the server's retention policy says.
        self.sweeper = WorkspaceSweeper(
            settings.workspace, self._removable_workspaces, settings.sweep_interval
        )
        self.instance = uuid.uuid4().hex
        self.stopping = threading.Event()
        self.exit_code = 0
        self.connections = 0

    # -- running ------------------------------------------------------------------------
    def run(self) -> int:
        """Until `stop()` (or a fatal refusal); the exit code."""
        self.orchestrator.start()
        self.sweeper.start()
        threading.Thread(target=self._connect_loop, name="messages", daemon=True).start()
        try:
            self.stopping.wait()
        finally:
            self._shutdown()
        return self.exit_code

    def stop(self) -> None:
        self.stopping.set()

    def _fatal(self, code: int, message: str) -> None:
        log.error("%s", message)
        self.exit_code = code
        self.stopping.set()

    def _connect_loop(self) -> None:
        pause, complained = 0.1, False
        while not self.stopping.is_set():
            try:
                self._register()
                complained = False
                self._listen()
                pause = 0.1
                if not self.stopping.is_set():
                    log.warning("lost the server at %s; reconnecting", self.api.base_url)
            except Unauthorized as exc:
                self._fatal(EX_NOPERM, f"the server refused the token: {exc}")
                return
            except Conflict as exc:
                self._fatal(EX_USAGE, f"cannot register: {exc} (choose another --name)")
                return
            except (ServerUnreachable, httpx.HTTPError, NotFound, ValueError) as exc:
                if not complained:
                    log.warning("cannot reach %s (%s); retrying", self.api.base_url, exc)
                    complained = True
            self.stopping.wait(pause)
            pause = min(pause * 2, 2.0)

    def _register(self) -> None:
        body = {
            "name": self.settings.name,
            "capabilities": self.orchestrator.capabilities.to_dict(),
            "capacity": self.settings.capacity,
            "cost_factor": self.settings.cost_factor,
            "instance": self.instance,
        }
        answer = self.api.call("POST", "/v1/orchestrators", body)
        self.orchestrator.lease_seconds = float(answer["lease_seconds"])

    def _listen(self) -> None:
        path = f"/v1/orchestrators/{quote(self.settings.name, safe='')}/messages"
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT)
        with (
            self.api.connection(timeout) as http,
            http.stream("GET", path, headers={"Accept": "text/event-stream"}) as response,
        ):
            if response.status_code != 200:
                response.read()
                json_answer(response)  # raises what the refusal means
                raise ValueError(f"HTTP {response.status_code} from {path}")
            parser = SseParser()
            for line in response.iter_lines():
                event = parser.feed(line)
                if event is not None:
                    self._dispatch(event.event, json.loads(event.data))

    def _dispatch(self, event: str, data: dict[str, Any]) -> None:
        try:
            if event == "hello":
                self._hello(data)
            elif event == "auction":
                lots = [Lot.from_dict(lot) for lot in data.get("lots", [])]
                self.orchestrator.announce(Auction(int(data["id"]), lots, set()))
            elif event == "award":
                lot = Lot.from_dict(data["lot"])
                log.info("won %s (%s) of pipeline %s", lot.name, lot.context, lot.pipeline)
                self.orchestrator.awarded(lot)
            elif event == "moved" and data.get("state") == ABORTING:
                self.orchestrator.abort(str(data["context"]))
            elif event == "lost":
                log.info("lost %s: awarded to another", data["lot"]["context"])
        except Unauthorized:
            raise
        except Exception as exc:  # one bad message or a failed bid must not end the stream
            log.warning("%s message not handled: %s", event, exc)

    def _hello(self, data: dict[str, Any]) -> None:
        self.orchestrator.lease_seconds = float(data.get("lease_seconds", 30.0))
        self.connections += 1
        caps = self.orchestrator.capabilities
        labels = ", ".join(sorted(caps.labels)) or "none"
        log.info(
            "%s %s as %s (labels: %s; capacity %d)",
            "connected to" if self.connections == 1 else "reconnected to",
            self.api.base_url,
            self.settings.name,
            labels,
            self.settings.capacity,
        )

    def _removable_workspaces(self, pipelines: list[str]) -> list[str]:
        answer = self.api.call("POST", "/v1/gc/workspaces", {"pipelines": pipelines})
        return [str(p) for p in answer["remove"]]

    def _shutdown(self) -> None:
        self.sweeper.stop()
        try:  # leave the auction first: awards not taken up go to someone else
            self.api.call("DELETE", f"/v1/orchestrators/{quote(self.settings.name, safe='')}")
        except Exception as exc:
            log.info("unregistering: %s", exc)
        running = self.orchestrator.running()
        if running:
            log.info("waiting up to %.0f s for %d running context(s)", self.settings.grace, running)
        self.orchestrator.stop(grace=self.settings.grace)
        self.api.close()
