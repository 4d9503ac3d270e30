"""The dashboard's pages: what each one reads and which template renders it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from otto.auction import Auctioneer
from otto.hooks import AFTER_THE_RUN, reacts_to, why_not_triggered
from otto.objectstore.base import ObjectStore
from otto.objectstore.errors import ObjectStoreError
from otto.objectstore.keys import context_log_key, step_log_key
from otto.psm import NotFound, PipelineStateMachine, Transition
from otto.psm.states import OUTCOMES, PENDING, RUNNING, Entity
from otto.status import Status
from otto.web import logview
from otto.web.logview import LogWindow
from otto.web.present import (
    FAILING,
    FILTERS,
    Described,
    describe,
    gate_conditions,
    gate_inputs,
    log_lines,
    shown,
    state,
    steps,
    timeline,
    walk,
)

PAGE = 50
STATUS_CHOICES = [PENDING, RUNNING, *OUTCOMES]


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
            log_lines=log_lines,
            after_the_run=AFTER_THE_RUN,
            hook_reacts_to=reacts_to,
            hook_why_not=why_not_triggered,
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
        """A run; a failed one opens with the log of its first failing step (or context)."""
        uuid = request.path_params["uuid"]
        q = request.query_params
        after = self.psm.events.last_seq
        try:
            run = self.psm.get(uuid)
        except NotFound:
            return self.render(request, "missing.html", 404, what=f"pipeline {uuid}")
        history = self.psm.transitions(uuid)
        since = _int(q.get("after"))  # a live page asks for what is new
        transitions = (
            self.psm.events.after(since, limit=100_000, pipeline=uuid) if since else history
        )
        described = describe(run["model"])
        failures = self._failures(run, described, history)
        shown_log = q.get("step") or next((f.opens for f in failures.values()), None)
        wants_log = shown_log and q.get("part") in (None, "log")
        return self.render(
            request,
            "pipeline.html",
            run=run,
            transitions=transitions,
            count=len(history),
            isolation=_isolation(history),
            names=_names(run, described),
            described=described,
            failures=failures,
            conditions=gate_conditions(run["model"]),
            inputs=gate_inputs(run["model"]),
            artifacts=self._artifacts(uuid),
            log=self._log(run, described, shown_log, _int(q.get("line"))) if wants_log else None,
            opened=shown_log,
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

    def _log(
        self, run: dict[str, Any], described: dict[str, Described], wanted: str, line: int
    ) -> LogWindow | None:
        """A window of a log (`wanted`: a step's uuid, nested ones too; a context's for its
        own log), as plain text: what the page shows before (or without) JavaScript."""
        found = _find_log(run, described, wanted)
        if found is None:
            return None
        key, title, state = found
        try:
            if line:
                return logview.around(self.objects, key, title, state, line)
            return logview.tail(self.objects, key, title, state)
        except ObjectStoreError:  # no log (yet)
            return LogWindow(key, title, state)

    def _failures(
        self, run: dict[str, Any], described: dict[str, Described], history: list[Transition]
    ) -> dict[str, Failure]:
        """Each failed context's reason, and the log that shows why, in the run's order."""
        reasons = {t.id: t.reason for t in history if t.entity == Entity.CONTEXT and t.reason}
        found: dict[str, Failure] = {}
        for batch in run["batches"]:
            for context in batch["contexts"]:
                if shown(context) not in FAILING:
                    continue
                failed = next((s for s in context["steps"] if shown(s) in FAILING), None)
                opens, label = context["uuid"], "context log"
                if failed is not None:
                    number = context["steps"].index(failed) + 1
                    top = described[failed["uuid"]]
                    opens, label = self._last_ran(run["uuid"], context["uuid"], top, number)
                found[context["uuid"]] = Failure(reasons.get(context["uuid"], ""), opens, label)
        return found

    def _last_ran(
        self, pipeline: str, context: str, step: Described, number: int
    ) -> tuple[str, str]:
        """What ended a failed step: the step itself or, for a step with a block, the
        block's last step that ran (the last with a log); its uuid and numbered label."""
        for path, inner in reversed(list(walk(step, str(number)))):
            try:
                self.objects.head(step_log_key(pipeline, context, inner.uuid))
            except ObjectStoreError:
                continue
            return inner.uuid, f"{path}. {inner.label}"
        return step.uuid, f"{number}. {step.label}"


@dataclass(frozen=True)
class Failure:
    """Why a context failed (its last transition's reason) and the log that shows it."""

    reason: str
    opens: str  # the uuid of the step (or context) whose log shows why
    label: str  # that step's number and label, e.g. `2.3. sh: make test`


def _find_log(
    run: dict[str, Any], described: dict[str, Described], wanted: str
) -> tuple[str, str, str] | None:
    """The key, title and state of the log of step (or context) `wanted`. A block's steps
    have no state of their own: theirs is the block's step's."""
    uuid = run["uuid"]
    for batch in run["batches"]:
        for context in batch["contexts"]:
            if wanted == context["uuid"]:
                title = f"{context['name']} › context"
                return context_log_key(uuid, wanted), title, context["state"]
            for number, step in enumerate(context["steps"], 1):
                top = described[step["uuid"]]
                for path, found in [(str(number), top), *walk(top, str(number))]:
                    if found.uuid == wanted:
                        title = f"{context['name']} › {path}. {found.label}"
                        return step_log_key(uuid, context["uuid"], wanted), title, shown(step)
    return None


def _names(run: dict[str, Any], described: dict[str, Described]) -> dict[str, str]:
    """What the timeline calls each entity: `pipeline`, `batch 2`, `context Build`, …"""
    names = {run["uuid"]: "pipeline"}
    for batch in run["batches"]:
        names[str(batch["index"])] = f"batch {batch['index'] + 1}"
        for context in batch["contexts"]:
            names[context["uuid"]] = f"context {context['name']}"
            for number, step in enumerate(context["steps"], 1):
                label = described[step["uuid"]].label
                names[step["uuid"]] = f"step {context['name']} › {number}. {label}"
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
        if t.entity == Entity.CONTEXT and t.data and "isolation" in t.data
    }
