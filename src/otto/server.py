"""`otto server`: every service in one process on one port (docs/architecture.md).

The embedded default keeps everything under `$OTTO_HOME`: the SQLite file,
the object store. `--db postgresql://…` puts the state in PostgreSQL.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from otto import __version__, serverlog
from otto.agent.masking import url_secrets
from otto.auction import Auctioneer
from otto.auction.remote_bidder import Orchestrators
from otto.auction.routes import AuctionApi
from otto.auth import Access, Guard
from otto.config import Settings
from otto.credentials import Credentials
from otto.credentials.keys import KeyRing
from otto.credentials.routes import CredentialsApi
from otto.diskspace import SpaceWatch
from otto.endpoints import openapi, routes
from otto.housekeeping import Housekeeper, HousekeepingApi, Janitor, Retention
from otto.limits import (
    KEEP_ALIVE,
    MAX_HEAD_BYTES,
    BodyLimit,
    GuardedH11Protocol,
    body_limit,
    connection_limit,
    listen_backlog,
    raise_nofile,
)
from otto.model import Checkout, Pipeline
from otto.objectstore import ObjectStore
from otto.objectstore import open_store as open_object_store
from otto.objectstore import routes as object_routes
from otto.objectstore.apidoc import object_paths
from otto.objectstore.base import DEFAULT_MAX_OBJECT_SIZE
from otto.orchestrator import Orchestrator
from otto.parser import ParseError
from otto.parser import routes as parser_routes
from otto.psm import PipelineStateMachine, open_store
from otto.psm.executor_routes import ExecutorApi
from otto.psm.fanout import FanOut
from otto.psm.routes import PsmApi
from otto.serverlog import fields
from otto.steps.checking import check_model, check_ottofile
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


def watched_paths(settings: Settings) -> list[Path]:
    """Where the server writes: `$OTTO_HOME`, and the database and objects when elsewhere."""
    paths = [settings.home]
    for where in (settings.db_url, settings.objects_url):
        if "://" not in where:
            paths.append(Path(where).absolute().parent)
    return paths


def _read_ottofile(text: str) -> tuple[Pipeline, str | None]:
    """An Ottofile sent to create a run: parsed and its steps checked; a 400 at the line
    and column where it does not parse."""
    try:
        return check_ottofile(text, filename="ottofile")
    except ParseError as exc:
        raise parser_routes.invalid_ottofile(exc) from None


def build_app(settings: Settings, workspace_source: Checkout | None = None) -> Starlette:
    """The whole server; `workspace_source`: the commit every run's workspaces start from
    when no project says otherwise (`otto run`'s embedded server: the directory it runs in)."""
    settings.home.mkdir(parents=True, exist_ok=True)
    space = SpaceWatch(watched_paths(settings))  # a full disk: said once, shown by /health
    store = open_store(settings.db_url)
    store.on_outcome = partial(space.note, where="database")
    psm = PipelineStateMachine(
        store,
        lease_seconds=settings.lease_seconds,
        default_stage_timeout=settings.default_stage_timeout,
    )
    # A claimed context's values (otto.credentials.grant); only with an API token: without
    # one, every local process (a step included) could set them or start a run that uses them.
    credentials = Credentials(store, KeyRing(settings.home)) if settings.token else None
    psm.credentials = credentials
    watcher = DeadlineWatcher(psm)
    auctioneer = Auctioneer(psm, window=settings.auction_window)
    public_url = settings.public_url or f"http://{settings.host}:{settings.port}"
    webhooks = Webhooks(psm, settings.home, public_url, api_token=bool(settings.token))
    isolation = settings.isolation().withholding(webhooks.secret_variables())
    local = Orchestrator(
        psm,
        auctioneer,
        settings.objects_url,
        settings.workspaces,
        name="local",
        capacity=settings.local_capacity,
        labels=settings.local_labels or None,
        lease_seconds=settings.lease_seconds,
        default_checkout=workspace_source,
        isolation=isolation,
        max_log_bytes=settings.max_log_bytes,
        on_trouble=space.failed,
        masked=lambda: [
            *(t for t in (settings.token, settings.read_token) if t),
            *url_secrets(settings.objects_url),
            *url_secrets(settings.db_url),
            *isolation.secret_values(),
            *webhooks.secret_values(),  # also of projects added since the start
        ],
    )
    if settings.local_orchestrator:
        auctioneer.register(local)
    remote = Orchestrators(auctioneer, psm, grace=settings.orchestrator_grace)
    objects = open_object_store(settings.objects_url)
    keeper = housekeeper(settings, psm, objects, webhooks)
    janitor = Janitor(keeper, idle=settings.janitor_interval)
    fanout = FanOut(psm.events)  # event streams, served off the API's event loop
    pipelines = PsmApi(psm, read_ottofile=_read_ottofile, check_model=check_model, fanout=fanout)
    endpoints = parser_routes.endpoints() + pipelines.endpoints()
    endpoints += ExecutorApi(psm, released=auctioneer.poke).endpoints()
    endpoints += AuctionApi(auctioneer, remote, psm).endpoints()
    endpoints += webhooks.endpoints()
    endpoints += HousekeepingApi(keeper, partial(_project_view, webhooks)).endpoints()
    endpoints += CredentialsApi(credentials).endpoints()
    document = openapi(endpoints, "Otto", __version__)
    document["paths"].update(object_paths(document))  # served by otto.objectstore.routes

    async def health(request: Request) -> JSONResponse:
        # 200 either way: the server is up and answers reads; `degraded` says why writes
        # fail (a 503 would have a load balancer or supervisor restart it, freeing nothing).
        reason = space.reason()
        if reason is not None:
            return JSONResponse({"status": "degraded", "reason": reason})
        return JSONResponse({"status": "ok"})

    async def openapi_json(request: Request) -> JSONResponse:
        return JSONResponse(document)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        psm.release_unclaimed(local.name)  # its awards made before a restart died with it
        remote.expect_holders()  # remote ones' wait for them a grace period
        if settings.local_orchestrator:
            local.start()  # first: it re-adopts its agents before their leases may expire
            psm.events.subscribe(local.watch)  # aborts, heard at once
        watcher.start()
        auctioneer.start()
        webhooks.start()
        janitor.start()
        fanout.start()
        address = f"http://{settings.host}:{settings.port}"
        state = fields(url=address, state=settings.db_url, version=__version__)
        log.info("otto server started", extra=state)
        try:
            yield
        finally:
            log.info("otto server stopping", extra=fields(url=address))
            fanout.stop()
            janitor.stop()
            webhooks.stop()
            remote.close()
            auctioneer.stop()
            psm.events.unsubscribe(local.watch)
            local.stop(grace=settings.shutdown_grace)
            watcher.stop()
            psm.close()

    dashboard = Dashboard(psm, auctioneer, objects, lambda: webhooks.projects)
    access = Access.from_settings(settings)  # hosts, origins, tokens, sessions (otto.auth)
    app_routes: list[BaseRoute] = [
        Route("/health", health),
        Route("/openapi.json", openapi_json),
        *routes(endpoints),
        *object_routes.routes(objects, space=space),
        *dashboard.routes(),
        *access.routes(dashboard.login_page),
    ]
    guard = [Middleware(Guard, access=access, login_page=dashboard.login_page)]
    object_limit = getattr(objects, "max_object_size", DEFAULT_MAX_OBJECT_SIZE)
    limit = partial(body_limit, objects=object_limit)
    guard.append(Middleware(BodyLimit, limit=limit, idle=settings.body_timeout))
    app = Starlette(routes=app_routes, lifespan=lifespan, middleware=guard)
    app.state.psm = psm
    app.state.auctioneer = auctioneer
    app.state.settings = settings
    app.state.space = space
    app.state.webhooks = webhooks
    return app


def housekeeper(
    settings: Settings, psm: PipelineStateMachine, objects: ObjectStore, webhooks: Webhooks
) -> Housekeeper:
    """The retention policy over this server's state, objects and own workspaces:
    the settings' defaults, each project's `retention:` block over them."""
    defaults = Retention(
        retention_days=settings.retention_days,
        keep_runs=settings.keep_runs,
        workspace_grace=settings.workspace_grace,
        keep_failed_workspaces=settings.keep_failed_workspaces,
        cache_limit_mb=settings.cache_limit_mb,
    )
    return Housekeeper(
        psm.store,
        objects,
        [settings.workspaces],
        defaults,
        lambda: {name: p.retention for name, p in webhooks.projects.items()},
    )


def _project_view(webhooks: Webhooks, name: str) -> dict[str, Any] | None:
    """A project as `GET /v1/projects` shows it; None when there is none of that name."""
    project = webhooks.projects.get(name)
    return None if project is None else project.public()


class CannotListen(Exception):
    """The server's port cannot be had: the message says why, in one line."""


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound (as uvicorn binds it); `CannotListen` when it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP by name: asyncio sets TCP_NODELAY only on sockets that say so, and without
    # it every answer on a kept-alive connection waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            message = f"port {port} is in use — is another otto server running? use --port"
            raise CannotListen(message) from None
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve(settings: Settings) -> None:
    """Run the server until SIGTERM or SIGINT; SIGHUP reloads `projects.d`. The port is
    taken before anything is written to disk: `CannotListen` if it is not free."""
    import uvicorn

    handler = serverlog.configure(settings.log_level, settings.log_format)
    sock = listen(settings.host, settings.port)
    app = build_app(settings)
    handler.addFilter(app.state.space.filter)  # a full disk: one line, not a storm
    signal.signal(signal.SIGHUP, lambda *_: app.state.webhooks.reload_soon())
    descriptors = raise_nofile()  # otto.limits: connections stay below the descriptor limit
    connections = connection_limit(descriptors, settings.max_connections)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        log_config=None,  # uvicorn's records go through the server's own handler
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,  # event streams would otherwise hold a shutdown forever
        http=GuardedH11Protocol.configured(settings.header_timeout, connections),
        limit_concurrency=connections + 1,  # the protocol keeps connections at `connections`
        timeout_keep_alive=KEEP_ALIVE,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        backlog=listen_backlog(descriptors),
    )
    with sock:
        uvicorn.Server(config).run(sockets=[sock])
