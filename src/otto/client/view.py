"""A run as the CLI shows it: the server's pipeline document, kept current by transitions.

`RunView.load(document)` reads `GET /v1/pipelines/{uuid}`; `apply(transition)`
moves it along with each event, so a live display needs no re-fetching.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from otto.model import Step
from otto.status import Status

OUTCOMES = frozenset(s.value for s in Status)
FINISHED = OUTCOMES | {"NotRun", "Skipped", "Complete"}
LABEL_WIDTH = 48


def timestamp(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def now() -> datetime:
    return datetime.now(UTC)


def elapsed(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from start to end (to now while still running)."""
    if start is None:
        return None
    return max(0.0, ((end or now()) - start).total_seconds())


class _Timed:
    """What steps and contexts share: a state that may be final, and a duration."""

    state: str
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def duration(self) -> float | None:
        return elapsed(self.started_at, self.finished_at)


@dataclass
class NestedStep:
    """A step in another's block (`dir '…' { … }`): it has a log, but no state of its own
    in the run (its block's step carries the outcome)."""

    uuid: str
    label: str
    nested: list[NestedStep] = field(default_factory=list)


@dataclass
class StepView(_Timed):
    uuid: str
    symbol: str
    label: str  # e.g. "sh 'make test'"
    state: str = "Pending"
    exit_code: int | None = None
    reason: str | None = None  # why it ended so, when it has an outcome (timeout, …)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    nested: list[NestedStep] = field(default_factory=list)  # its block's steps, in order


@dataclass
class ContextView(_Timed):
    uuid: str
    name: str
    batch: int
    state: str = "Pending"
    orchestrator: str | None = None
    attempt: int = 0
    reason: str | None = None  # why it ended so, when it has an outcome (timeout, …)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    steps: list[StepView] = field(default_factory=list)
    condition: str | None = None  # its gate's `when { … }`, if it has one
    waiting: dict[str, Any] | None = None  # what it asks while Waiting at a gate's input
    # What it reacts to, for a hook (`rollback`, `notify`): `on`, `of`, `of_name`, and once
    # it was not triggered, the `outcome` it saw (the API's `hook`).
    hook: dict[str, Any] | None = None

    @property
    def current_step(self) -> StepView | None:
        return next((s for s in self.steps if s.state == "Running"), None)


@dataclass
class BatchView:
    index: int
    mode: str
    state: str = "Pending"
    status: str | None = None
    contexts: list[ContextView] = field(default_factory=list)
    hooks: bool = False  # a batch of hooks: it runs after the run's own batches


@dataclass(frozen=True)
class Rejection:
    """Why a run was refused at creation and never ran (`config_error`, the message:
    `FILE:LINE:COLUMN: …`, the line and a caret)."""

    reason: str
    message: str

    @classmethod
    def of(cls, data: Any) -> Rejection | None:
        if not isinstance(data, dict) or not data.get("reason"):
            return None
        return cls(str(data["reason"]), str(data.get("message") or ""))

    def summary(self) -> str:
        """Its first line, for a list's one row."""
        return self.message.split("\n", 1)[0] or self.reason


@dataclass
class RunView:
    uuid: str
    state: str
    status: str | None
    repo: str | None = None
    ref: str | None = None
    sha: str | None = None
    abort_requested: bool = False
    abort_reason: str | None = None  # user_abort, superseded, …
    abort_data: dict[str, Any] = field(default_factory=dict)  # e.g. {"superseded_by": uuid}
    message: str | None = None  # the commit's, when the run comes from one
    created_at: datetime | None = None
    started_at: datetime | None = None  # of its last attempt: its creation, or a retry
    updated_at: datetime | None = None
    finished_at: datetime | None = None
    batches: list[BatchView] = field(default_factory=list)
    rejected: Rejection | None = None
    logs_expired: bool = False  # its logs and artifacts removed by the retention policy

    @classmethod
    def load(cls, doc: dict[str, Any]) -> RunView:
        labels = _step_labels(doc.get("model") or {})
        nested = _nested_steps(doc.get("model") or {})
        conditions = _conditions(doc.get("model") or {})
        run = cls(
            uuid=doc["uuid"],
            state=doc["state"],
            status=doc.get("status"),
            repo=doc.get("repo"),
            ref=doc.get("ref"),
            sha=doc.get("sha"),
            abort_requested=bool(doc.get("abort_requested")),
            abort_reason=doc.get("abort_reason"),
            abort_data=doc.get("abort_data") or {},
            message=doc.get("message"),
            created_at=timestamp(doc.get("created_at")),
            started_at=timestamp(doc.get("started_at") or doc.get("created_at")),
            updated_at=timestamp(doc.get("updated_at")),
            rejected=Rejection.of(doc.get("rejected")),
            logs_expired=bool(doc.get("logs_expired")),
        )
        if run.state == "Complete":
            run.finished_at = run.updated_at
        number = 0
        for b in doc.get("batches", []):
            batch = BatchView(b["index"], b["mode"], b["state"], b.get("status"))
            batch.hooks = bool(b.get("hooks"))
            for c in b.get("contexts", []):
                number += 1
                context = ContextView(
                    uuid=c["uuid"],
                    name=c.get("name") or f"#{number}",
                    batch=batch.index,
                    state=c["state"],
                    orchestrator=c.get("orchestrator"),
                    attempt=c.get("attempt") or 0,
                    reason=c.get("reason"),
                    started_at=timestamp(c.get("started_at")),
                    finished_at=timestamp(c.get("finished_at")),
                    condition=conditions.get(c["uuid"]),
                    waiting=c.get("waiting"),
                    hook=c.get("hook"),
                )
                for s in c.get("steps", []):
                    context.steps.append(
                        StepView(
                            uuid=s["uuid"],
                            symbol=s["symbol"],
                            label=labels.get(s["uuid"], s["symbol"]),
                            state=s["state"],
                            exit_code=s.get("exit_code"),
                            reason=s.get("reason"),
                            started_at=timestamp(s.get("started_at")),
                            finished_at=timestamp(s.get("finished_at")),
                            nested=nested.get(s["uuid"], []),
                        )
                    )
                batch.contexts.append(context)
            run.batches.append(batch)
        return run

    # -- queries ----------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return self.state == "Complete"

    @property
    def duration(self) -> float | None:
        """Of its last attempt: a retried run counts from its retry."""
        return elapsed(self.started_at, self.finished_at if self.complete else None)

    @property
    def shown_state(self) -> str:
        """The status once complete, else the state (`Aborting` while an abort is pending)."""
        if self.complete:
            return self.status or "Complete"
        return "Aborting" if self.abort_requested else self.state

    def contexts(self) -> Iterator[ContextView]:
        for batch in self.batches:
            yield from batch.contexts

    def context(self, uuid: str) -> ContextView | None:
        return next((c for c in self.contexts() if c.uuid == uuid), None)

    def find_contexts(self, name: str) -> list[ContextView]:
        """Contexts named `name`, or whose uuid starts with it."""
        named = [c for c in self.contexts() if c.name == name]
        return named or [c for c in self.contexts() if name and c.uuid.startswith(name.lower())]

    def step(self, uuid: str) -> tuple[ContextView, StepView] | None:
        for context in self.contexts():
            for step in context.steps:
                if step.uuid == uuid:
                    return context, step
        return None

    # -- transitions ------------------------------------------------------------------
    def apply(self, event: dict[str, Any]) -> None:
        """Move the view along with one transition of this run."""
        if event.get("pipeline") != self.uuid:
            return
        to, at = event["to"], timestamp(event.get("at"))
        data = event.get("data") or {}
        entity, ident = event["entity"], str(event["id"])
        if entity == "pipeline":
            if event.get("from") == "Complete":  # a retry: a new attempt begins
                self.started_at = at or self.started_at
            self.state, self.updated_at = to, at or self.updated_at
            complete = to == "Complete"
            self.status = event.get("status") if complete else None
            self.finished_at = at if complete else None
        elif entity == "batch":
            batch = next((b for b in self.batches if str(b.index) == ident), None)
            if batch is not None:
                batch.state = to
                batch.status = event.get("status") if to == "Complete" else None
        elif entity == "context":
            context = self.context(ident)
            if context is not None:
                _move_context(context, to, at, data)
                ended = to in OUTCOMES or to == "Skipped"
                context.reason = event.get("reason") if ended else None
        elif entity == "step":
            found = self.step(ident)
            if found is not None:
                step = found[1]
                step.state = to
                step.reason = event.get("reason") if to in OUTCOMES else None
                if to in ("Running", "Pending"):
                    step.started_at = at if to == "Running" else None
                    step.finished_at, step.exit_code = None, None
                elif to in FINISHED:
                    step.finished_at = at
                    step.exit_code = data.get("exit_code", step.exit_code)


def _move_context(context: ContextView, to: str, at: datetime | None, data: dict[str, Any]) -> None:
    attempt = data.get("attempt")
    if to == "Running":
        if isinstance(attempt, int) and attempt > context.attempt and context.attempt:
            for step in context.steps:  # a new attempt starts its steps afresh
                step.state, step.exit_code = "Pending", None
                step.started_at = step.finished_at = None
        context.started_at, context.finished_at = at, None
        context.orchestrator = data.get("orchestrator", context.orchestrator)
        if isinstance(attempt, int):
            context.attempt = attempt
    elif to == "Pending":
        context.started_at = context.finished_at = None
    elif to in FINISHED:
        context.finished_at = at
    context.waiting = _asked(data) if to == "Waiting" else None
    if context.hook is not None and to == "Skipped":  # not triggered: what it saw
        context.hook = {**context.hook, "outcome": data.get("outcome")}
    context.state = to


def _asked(data: dict[str, Any]) -> dict[str, Any]:
    """What a context's move to Waiting says it asks (`ContextView.waiting`)."""
    return {k: data.get(k) for k in ("gate", "message", "parameters")}


def _step_labels(model: dict[str, Any]) -> dict[str, str]:
    """Step uuid → a one-line description from the model (`sh 'make test'`)."""
    labels: dict[str, str] = {}
    for batch in model.get("batches", []):
        for context in batch.get("contexts", []):
            for step in context.get("steps", []):
                labels[step["uuid"]] = step_label(step.get("symbol", "?"), step.get("parameters"))
    return labels


def _conditions(model: dict[str, Any]) -> dict[str, str]:
    """Context uuid → its gate's condition, as written back (`branch == 'main'`)."""
    found: dict[str, str] = {}
    for batch in model.get("batches", []):
        for context in batch.get("contexts", []):
            condition = (context.get("gate") or {}).get("condition")
            if isinstance(condition, dict) and condition.get("source"):
                found[context["uuid"]] = str(condition["source"])
    return found


def _nested_steps(model: dict[str, Any]) -> dict[str, list[NestedStep]]:
    """Step uuid → the steps of its blocks, each with its own, from the model."""
    found: dict[str, list[NestedStep]] = {}
    for batch in model.get("batches", []):
        for context in batch.get("contexts", []):
            for raw in context.get("steps", []):
                try:
                    inner = _block_steps(Step.model_validate(raw))
                except ValueError:  # a model this client does not understand: none shown
                    continue
                if inner:
                    found[raw["uuid"]] = inner
    return found


def _block_steps(step: Step) -> list[NestedStep]:
    return [
        NestedStep(s.uuid, step_label(s.symbol, s.parameters), _block_steps(s))
        for s in step.block_steps()
    ]


def step_label(symbol: str, parameters: Any, width: int = LABEL_WIDTH) -> str:
    """`sh 'make test'`; a step with a `label` (`sh script: '…', label: 'Build'`) shows
    that instead: `sh: Build`."""
    label = parameters.get("label") if isinstance(parameters, dict) else None
    if isinstance(label, str) and label.strip():
        text = f"{symbol}: {' '.join(label.split())}"
        return text if len(text) <= width else text[: width - 1] + "…"
    if isinstance(parameters, list):
        shown = [_value(p) for p in parameters if not isinstance(p, list | dict)]
        blocks = any(isinstance(p, list) for p in parameters)
    elif isinstance(parameters, dict):
        shown = [f"{k}: {_value(v)}" for k, v in parameters.items() if k != "block"]
        blocks = "block" in parameters
    else:
        shown, blocks = [], False
    text = " ".join([symbol, ", ".join(shown)]).strip() + (" { … }" if blocks else "")
    return text if len(text) <= width else text[: width - 1] + "…"


def _value(value: Any) -> str:
    if isinstance(value, str):
        return "'" + " ".join(value.split()) + "'"
    return json.dumps(value)
