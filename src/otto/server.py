"""`otto server`: every service in one process on one port (DESIGN §1).

The embedded default keeps everything under `$OTTO_HOME`: the SQLite file,
the object store. `--db postgresql://…` puts the state in PostgreSQL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from otto import __version__
from otto.api import openapi, routes
from otto.auction import Auctioneer
from otto.auction.api import AuctionApi
from otto.auction.remote import Orchestrators
from otto.auth import BearerToken
from otto.config import Settings
from otto.objectstore import http as objects_http
from otto.objectstore import open_store as open_object_store
from otto.orchestrator import Orchestrator
from otto.psm import PipelineStateMachine, open_store
from otto.psm.api import PsmApi
from otto.web import Dashboard
from otto.webhooks import Webhooks

log = logging.getLogger("otto.server")


class DeadlineWatcher(threading.Thread):
    """Fires stored deadlines (lease expiries) as they fall due, also after a restart."""

    def __init__(self, psm: PipelineStateMachine, poll: float = 1.0) -> None:
        super().__init__(name="psm-deadlines", daemon=True)
        self.psm, self.poll = psm, poll
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.poll):
            try:
                self.psm.expire_leases()
            except Exception:  # keep watching; the next round retries
                log.exception("expiring leases failed")

    def stop(self) -> None:
        self.stopping.set()
        self.join()


def build_app(settings: Settings) -> Starlette:
    settings.home.mkdir(parents=True, exist_ok=True)
    psm = PipelineStateMachine(open_store(settings.db_url), lease_seconds=settings.lease_seconds)
    watcher = DeadlineWatcher(psm)
    auctioneer = Auctioneer(psm, window=settings.auction_window)
    public_url = settings.public_url or f"http://{settings.host}:{settings.port}"
    webhooks = Webhooks(psm, settings.home, public_url)
    local = Orchestrator(
        psm,
        auctioneer,
        settings.objects_url,
        settings.workspaces,
        name="local",
        capacity=settings.local_capacity,
        labels=settings.local_labels or None,
        lease_seconds=settings.lease_seconds,
        checkout=webhooks.checkout,
    )
    if settings.local_orchestrator:
        auctioneer.register(local)
    remote = Orchestrators(auctioneer, psm, grace=settings.orchestrator_grace)
    endpoints = PsmApi(psm).endpoints() + AuctionApi(auctioneer, remote, psm).endpoints()
    endpoints += webhooks.endpoints()
    document = openapi(endpoints, "Otto", __version__)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(document)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        psm.release_unclaimed()  # awards made before a restart died with it
        watcher.start()
        if settings.local_orchestrator:
            local.start()
        auctioneer.start()  # it also tells the orchestrators of aborts, at once
        webhooks.start()
        try:
            yield
        finally:
            webhooks.stop()
            remote.close()
            auctioneer.stop()
            local.stop(grace=settings.shutdown_grace)
            watcher.stop()
            psm.close()

    objects = open_object_store(settings.objects_url)
    dashboard = Dashboard(psm, auctioneer, objects, lambda: webhooks.projects)
    app_routes: list[BaseRoute] = [
        Route("/health", health),
        Route("/openapi.json", openapi_json),
        *routes(endpoints),
        *objects_http.routes(objects),
        *dashboard.routes(),
    ]
    guard = [Middleware(BearerToken, token=settings.token)] if settings.token else []
    app = Starlette(routes=app_routes, lifespan=lifespan, middleware=guard)
    app.state.psm = psm
    app.state.auctioneer = auctioneer
    app.state.settings = settings
    return app


def serve(settings: Settings) -> None:
    import uvicorn

    app = build_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,  # event streams would otherwise hold a shutdown forever
    )
