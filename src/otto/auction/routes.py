"""The auctions' and the orchestrator registry's HTTP endpoints, for remote orchestrators.

- `GET /v1/auctions`: the open auction and the recent ones, with their bids;
- `GET /v1/orchestrators`: every orchestrator taking part (local and remote);
- `POST /v1/orchestrators`: a remote orchestrator registers (201; 409 if the
  name is held by another live one); then it holds
  `GET /v1/orchestrators/{name}/messages` open (see `otto.auction.remote_bidder`);
- `DELETE /v1/orchestrators/{name}`: it leaves; awards it never took up go back;
- `POST /v1/orchestrators/{name}/poke`: it has free capacity: auction again;
- `POST /v1/auctions/{id}/bids`: its answer to an auction (409 when closed).

What an orchestrator calls to run a context (claim, reports, giving it back) is
`otto.psm.executor_routes`'s.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from otto.auction.auctioneer import Auctioneer
from otto.auction.remote_bidder import NameTaken, Orchestrators, Registration, RemoteBidder
from otto.auction.requirements import Capabilities
from otto.endpoints import ApiError, Endpoint, parse_body, query_int
from otto.psm import PipelineStateMachine

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
LABEL = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"
Cost = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrchestratorCapabilities(_Body):
    os: str = Field(min_length=1, max_length=64)
    arch: str = Field(min_length=1, max_length=64)
    cores: int = Field(1, ge=1)
    memory_mb: int = Field(0, ge=0)
    labels: list[Annotated[str, Field(pattern=LABEL)]] = Field(default_factory=list)
    containers: bool = False  # runs contexts whose stage names an image


class RegisterOrchestrator(_Body):
    name: str = Field(pattern=NAME)
    capabilities: OrchestratorCapabilities
    capacity: int = Field(ge=1, le=100_000)
    cost_factor: Cost = 1.0
    instance: str | None = Field(None, max_length=100)  # tells a restart from a namesake


class Bid(_Body):
    orchestrator: str = Field(pattern=NAME)
    costs: dict[str, Cost]  # context uuid → estimated cost; empty: no bid


class AuctionApi:
    def __init__(
        self, auctioneer: Auctioneer, orchestrators: Orchestrators, psm: PipelineStateMachine
    ) -> None:
        self.auctioneer = auctioneer
        self.orchestrators = orchestrators
        self.psm = psm

    def endpoints(self) -> list[Endpoint]:
        base = "/v1/orchestrators/{name}"
        return [
            Endpoint(
                "GET",
                "/v1/auctions",
                self.auctions,
                "Open and recent auctions with bids",
                responses={200: "OK", 400: "a bad query value"},
            ),
            Endpoint(
                "POST",
                "/v1/auctions/{id}/bids",
                self.bid,
                "An orchestrator's bid: a cost per context it will run",
                Bid,
                {200: "accepted", 409: "the auction is closed or the bidder not invited"},
            ),
            Endpoint("GET", "/v1/orchestrators", self.list, "Orchestrators taking part"),
            Endpoint(
                "POST",
                "/v1/orchestrators",
                self.register,
                "Register a remote orchestrator (then open its message stream)",
                RegisterOrchestrator,
                {201: "registered", 409: "the name is taken by a connected orchestrator"},
            ),
            Endpoint(
                "DELETE",
                base,
                self.forget,
                "Unregister; contexts awarded to it and not started are auctioned again",
                responses={200: "forgotten", 404: "unknown orchestrator"},
            ),
            Endpoint(
                "GET",
                f"{base}/messages",
                self.messages,
                "Server-sent events for one orchestrator: hello, auction, award, moved",
                responses={200: "text/event-stream", 404: "not registered"},
            ),
            Endpoint(
                "POST",
                f"{base}/poke",
                self.poke,
                "The orchestrator has free capacity: auction waiting contexts",
                responses={202: "auction under way", 404: "not registered"},
            ),
        ]

    # -- auctions -------------------------------------------------------------------
    def auctions(self, request: Request) -> Response:
        limit = query_int(request, "limit", 50, minimum=1)
        return JSONResponse({"auctions": self.auctioneer.auctions()[:limit]})

    def bid(self, request: Request) -> Response:
        raw = request.path_params["id"]
        if not re.fullmatch(r"[0-9]{1,18}", raw):
            raise ApiError(422, "invalid_request", "id: not an auction number", field="id")
        body = parse_body(Bid, request.state.body)
        if not self.auctioneer.bid(int(raw), body.orchestrator, body.costs):
            raise ApiError(
                409, "auction_closed", f"auction {raw} is closed or {body.orchestrator} not invited"
            )
        return JSONResponse({"accepted": True})

    # -- orchestrators ----------------------------------------------------------------
    def list(self, request: Request) -> Response:
        remote = {b.name: b.to_dict() for b in self.orchestrators.all()}
        found = [_describe(b) for b in self.auctioneer.bidders() if b.name not in remote]
        return JSONResponse({"orchestrators": found + sorted(remote.values(), key=_by_name)})

    def register(self, request: Request) -> Response:
        body = parse_body(RegisterOrchestrator, request.state.body)
        caps = Capabilities.from_dict(body.capabilities.model_dump())
        reg = Registration(body.name, caps, body.capacity, body.cost_factor, body.instance)
        try:
            self.orchestrators.register(reg)
        except NameTaken as exc:
            raise ApiError(409, "name_taken", str(exc), field="name") from None
        answer = {
            "name": body.name,
            "lease_seconds": self.psm.lease_seconds,
            "auction_window": self.auctioneer.window,
            "messages": f"/v1/orchestrators/{body.name}/messages",
        }
        return JSONResponse(answer, status_code=201)

    def forget(self, request: Request) -> Response:
        name = request.path_params["name"]
        if not self.orchestrators.forget(name):
            raise ApiError(404, "not_found", f"no remote orchestrator {name!r}")
        return JSONResponse({"name": name, "forgotten": True})

    def poke(self, request: Request) -> Response:
        self._bidder(request)
        self.auctioneer.poke()
        return JSONResponse({"poked": True}, status_code=202)

    async def messages(self, request: Request) -> Response:
        bidder = self._bidder(request)
        return StreamingResponse(
            self._stream(bidder),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _stream(self, bidder: RemoteBidder) -> AsyncIterator[bytes]:
        generation, queue = bidder.attach()
        try:
            self.orchestrators.connected(bidder)
            async for chunk in bidder.messages(queue):
                yield chunk
        finally:
            self.orchestrators.disconnected(bidder, generation)

    def _bidder(self, request: Request) -> RemoteBidder:
        name = request.path_params["name"]
        bidder = self.orchestrators.get(name)
        if bidder is None:
            raise ApiError(404, "not_registered", f"no remote orchestrator {name!r}: register")
        return bidder


def _describe(bidder: Any) -> dict[str, Any]:
    return {
        "name": bidder.name,
        "remote": False,
        "connected": True,
        "capabilities": bidder.capabilities.to_dict(),
        "capacity": getattr(bidder, "capacity", None),
        "cost_factor": getattr(bidder, "cost_factor", None),
        "running": bidder.running() if hasattr(bidder, "running") else None,
    }


def _by_name(entry: dict[str, Any]) -> str:
    return str(entry["name"])
