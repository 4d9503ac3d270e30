"""The dashboard's pages: what each one reads and which template renders it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from otto.agent.reporter import context_log_key, step_log_key
from otto.auction import Auctioneer
from otto.objectstore.base import ObjectStore
from otto.objectstore.errors import ObjectStoreError
from otto.psm import NotFound, PipelineStateMachine, Transition
from otto.psm.states import OUTCOMES, PENDING, RUNNING
from otto.status import Status
from otto.web.present import FILTERS, state, steps, timeline

PAGE = 50
LOG_TAIL = 256 * 1024  # what a page shows of a log without JavaScript
STATUS_CHOICES = [PENDING, RUNNING, *OUTCOMES]
# Every terminal escape sequence (ECMA-48), not only colours: a log is a step's output,
# and OSC (titles, hyperlinks, clipboard writes), DCS, APC, … are for a terminal, not a
# page. Strings (OSC, DCS, SOS, PM, APC) run to BEL or ST, or to the end of the text when
# cut off; CSI is `ESC [` or C1 CSI; any other `ESC` takes its intermediates and a final
# byte; a stray ESC or C1 control, and C0 controls but tab, newline and carriage return
# (backspace, bell, …), go too. Applied to decoded text, so C1 means U+0080–U+009F.
ESCAPES = re.compile(
    r"(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[\s\S]*?(?:\x07|\x1b\\|\x9c|\Z)"  # strings
    r"|(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"  # CSI: parameters, intermediates, final
    r"|\x1b[ -/]*[0-~]?"  # any other escape sequence, or a lone ESC
    r"|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"  # other controls
)


def strip_escapes(text: str) -> str:
    """`text` as a page may show it: no terminal escape sequences, no controls."""
    return ESCAPES.sub("", text)


Projects = Callable[[], Mapping[str, Any]]  # name → project (`otto.webhooks.Project`)


class Dashboard:
    """`routes()` serves the pages; `?part=NAME` renders one region (a template block)."""

    def __init__(
        self,
        psm: PipelineStateMachine,
        auctioneer: Auctioneer,
        objects: ObjectStore,
        projects: Projects,
    ) -> None:
        self.psm, self.auctioneer, self.objects, self.projects = psm, auctioneer, objects, projects
        self.env = Environment(
            loader=PackageLoader("otto.web"),
            autoescape=select_autoescape(default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(FILTERS)
        self.env.globals.update(
            context_log_key=context_log_key,
            state=state,
            timeline=timeline,
            steps=steps,
        )

    def routes(self) -> list[BaseRoute]:
        static = StaticFiles(directory=Path(__file__).parent / "static")
        return [
            Route("/", self.runs),
            Route("/pipelines/{uuid}", self.pipeline),
            Route("/auctions", self.auctions),
            Route("/projects", self.projects_page),
            Mount("/static", static, name="static"),
        ]

    def render(self, request: Request, name: str, status: int = 200, **values: Any) -> Response:
        template = self.env.get_template(name)
        part = request.query_params.get("part")
        if part and part in template.blocks:
            context = template.new_context({**values, "request": request, "auth": _auth(request)})
            html = "".join(template.blocks[part](context))
        else:
            html = template.render(request=request, auth=_auth(request), **values)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def login_page(self, following: str, error: str) -> str:
        """The login form (`otto.auth` answers a page with it while a token is needed);
        `following` is where to go once logged in."""
        return self.env.get_template("login.html").render(next=following, error=error)

    # -- pages -------------------------------------------------------------------------
    def runs(self, request: Request) -> Response:
        q = request.query_params
        chosen = {k: q.get(k, "").strip() for k in ("project", "branch", "status")}
        filters: dict[str, str | None] = {"project": chosen["project"] or None}
        if chosen["branch"]:
            branch = chosen["branch"]
            filters["ref"] = branch if branch.startswith("refs/") else f"refs/heads/{branch}"
        if chosen["status"] in OUTCOMES:
            filters["status"] = chosen["status"]
        elif chosen["status"] in (PENDING, RUNNING):
            filters["state"] = chosen["status"]
        after = self.psm.events.last_seq  # before reading: later changes reach the page
        try:
            runs, following = self.psm.list(**filters, limit=PAGE, cursor=q.get("cursor"))
        except ValueError:
            runs, following = [], None
        return self.render(
            request,
            "runs.html",
            runs=runs,
            following=following,
            chosen=chosen,
            paged=bool(q.get("cursor")),
            projects=sorted(self.projects()),
            statuses=STATUS_CHOICES,
            after=after,
        )

    def pipeline(self, request: Request) -> Response:
        uuid = request.path_params["uuid"]
        after = self.psm.events.last_seq
        try:
            run = self.psm.get(uuid)
        except NotFound:
            return self.render(request, "missing.html", 404, what=f"pipeline {uuid}")
        since = _int(request.query_params.get("after"))  # a live page asks for what is new
        if since:
            transitions = self.psm.events.after(since, limit=100_000, pipeline=uuid)
        else:
            transitions = self.psm.transitions(uuid)
        names = _names(run)
        step = request.query_params.get("step")
        return self.render(
            request,
            "pipeline.html",
            run=run,
            transitions=transitions,
            isolation=_isolation(transitions),
            names=names,
            artifacts=self._artifacts(uuid),
            log=self._log(run, step) if step else None,
            after=after,
            finished=run["status"] is not None,
            retryable=run["status"] not in (None, Status.SUCCESS),
        )

    def auctions(self, request: Request) -> Response:
        found = self.auctioneer.auctions()
        names = {lot["context"]: (lot["pipeline"], lot["name"]) for a in found for lot in a["lots"]}
        return self.render(
            request,
            "auctions.html",
            open=[a for a in found if a["state"] == "open"],
            closed=[a for a in found if a["state"] == "closed"],
            lots=names,
            after=self.psm.events.last_seq,
        )

    def projects_page(self, request: Request) -> Response:
        configured = self.projects()
        latest = {name: self.psm.latest_by_ref(name) for name in sorted(configured)}
        return self.render(
            request,
            "projects.html",
            projects=configured,
            latest=latest,
            after=self.psm.events.last_seq,
        )

    # -- what the run page reads from the object store ---------------------------------
    def _artifacts(self, uuid: str) -> list[dict[str, Any]]:
        try:
            found = self.objects.list(f"{uuid}/artifacts/")
        except ObjectStoreError:
            return []
        return [
            {"name": info.key.split("/artifacts/", 1)[1], "key": info.key, "size": info.size}
            for info in found
        ]

    def _log(self, run: dict[str, Any], wanted: str) -> dict[str, Any] | None:
        """A step's log (`wanted` = its uuid; a context's uuid for its own log) with its tail
        as plain text: what the page shows before (or without) JavaScript."""
        uuid = run["uuid"]
        for batch in run["batches"]:
            for context in batch["contexts"]:
                if wanted == context["uuid"]:
                    key = context_log_key(uuid, wanted)
                    return self._tail(key, f"{context['name']} › context", context["state"])
                for number, step in enumerate(context["steps"], 1):
                    if step["uuid"] == wanted:
                        key = step_log_key(uuid, context["uuid"], wanted)
                        title = f"{context['name']} › {number}. {step['symbol']}"
                        return self._tail(key, title, step["state"])
        return None

    def _tail(self, key: str, title: str, state: str) -> dict[str, Any]:
        log = {"key": key, "title": title, "state": state, "size": 0, "text": "", "cut": False}
        try:
            size = self.objects.head(key).size
            data = self.objects.get_range(key, max(0, size - LOG_TAIL))
        except ObjectStoreError:
            return log
        text = strip_escapes(data.decode("utf-8", "replace"))
        return {**log, "size": size, "text": text, "cut": size > LOG_TAIL}


def _names(run: dict[str, Any]) -> dict[str, str]:
    """What the timeline calls each entity: `pipeline`, `batch 2`, `context Build`, …"""
    names = {run["uuid"]: "pipeline"}
    for batch in run["batches"]:
        names[str(batch["index"])] = f"batch {batch['index'] + 1}"
        for context in batch["contexts"]:
            names[context["uuid"]] = f"context {context['name']}"
            for number, step in enumerate(context["steps"], 1):
                names[step["uuid"]] = f"step {context['name']} › {number}. {step['symbol']}"
    return names


def _auth(request: Request) -> dict[str, str]:
    """What `otto.auth.Guard` found: mode `none` (no token), `in` (a session) or `out`,
    and the session's CSRF token, which the page hands to its scripts."""
    return dict(request.scope.get("otto.auth") or {"mode": "none", "csrf": ""})


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0


def _isolation(transitions: list[Transition]) -> dict[str, str]:
    """How each context's (latest) attempt ran its steps: `bubblewrap`, `none`, `podman`."""
    return {
        t.id: str(t.data["isolation"])
        for t in transitions
        if t.entity == "context" and t.data and "isolation" in t.data
    }
