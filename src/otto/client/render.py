"""What `otto ps`, `otto show`, `otto events` and `otto replay` print."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from otto.client.terminal import (
    Cell,
    Terminal,
    age,
    duration,
    exit_note,
    plural,
    short_ref,
    table,
)
from otto.client.view import ContextView, Rejection, RunView, StepView, elapsed, timestamp
from otto.hooks import AFTER_THE_RUN, reacts_to, why_not_triggered

REASON_WIDTH = 60
# Why a run was aborted, as `otto show` says it (`superseded` names the newer run).
ABORT_REASONS = {
    "user_abort": "aborted by user",
    "superseded": "superseded",
    "pr_closed": "pull request closed",
}


def pipeline_state(summary: dict[str, Any]) -> str:
    if summary["state"] == "Complete":
        return summary.get("status") or "Complete"
    if summary.get("abort_requested"):
        return "Aborting"
    return "Waiting" if summary.get("waiting") else summary["state"]


def ps(term: Terminal, pipelines: list[dict[str, Any]]) -> None:
    if not pipelines:
        term.write("no pipelines")
        return
    rows: list[list[Cell]] = []
    for p in pipelines:
        state = pipeline_state(p)
        created = timestamp(p.get("created_at"))
        started = timestamp(p.get("started_at")) or created  # a retry's last attempt
        end = timestamp(p.get("updated_at")) if p["state"] == "Complete" else None
        rows.append(
            [
                p["uuid"][:8],
                term.styled(state),
                p.get("project") or p.get("repo") or "-",
                short_ref(p.get("ref")),
                p.get("trigger") or "-",
                age(created),
                duration(elapsed(started, end)),
                _reason(p),
            ]
        )
    header = ["UUID", "STATUS", "PROJECT", "REF", "TRIGGER", "AGE", "DURATION", "REASON"]
    table(term, header, rows)


def _reason(summary: dict[str, Any]) -> str:
    """Why a run never ran, in one short line (empty for any other run)."""
    rejected = Rejection.of(summary.get("rejected"))
    if rejected is None:
        return ""
    text = rejected.summary()
    return text if len(text) <= REASON_WIDTH else text[: REASON_WIDTH - 1] + "…"


def show(term: Terminal, run: RunView) -> None:
    state = run.shown_state
    head = Text.assemble(
        ("Pipeline ", "bold"),
        (run.uuid, "bold"),
        "  ",
        term.styled(state),
        f"  {duration(run.duration)}  created {age(run.created_at)}",
    )
    _line(term, head)
    origin = "  ".join(
        f"{name} {value}"
        for name, value in (("repo", run.repo), ("ref", run.ref), ("sha", run.sha))
        if value
    )
    if origin:
        _line(term, Text(origin))
    for line in (run.message or "").strip().splitlines():
        _line(term, Text(f"    {line}"))
    why = abort_reason(run)
    if why:
        _line(term, term.styled("Aborted", why))
    if run.logs_expired:
        _line(term, Text("Logs expired: removed by the retention policy"))
    if run.batches:
        contexts = sum(len(b.contexts) for b in run.batches)
        _line(term, Text(f"{plural(len(run.batches), 'batch')}, {plural(contexts, 'context')}"))
    _line(term, Text(""))
    if run.rejected is not None:
        rejection(term, run.rejected)
        return
    rows: list[list[Cell]] = []
    total = len(run.batches)
    first_hooks = next((b for b in run.batches if b.hooks), None)
    for batch in run.batches:
        if batch is first_hooks:  # the hooks, after the run's own batches
            rows.append([Text(AFTER_THE_RUN, style="bold"), "", "", "", ""])
        state = batch.status if batch.state == "Complete" and batch.status else batch.state
        label = f"Batch {batch.index + 1}/{total} · {batch.mode}"
        rows.append([Text(label, style="bold"), term.styled(state), "", "", ""])
        for context in batch.contexts:
            rows.append(
                [
                    f"  {context_name(context)}",
                    term.styled(context.state, term.state(context.state) + context_note(context)),
                    context.orchestrator or "-",
                    str(context.attempt) if context.attempt else "-",
                    duration(context.duration),
                ]
            )
            for number, step in enumerate(context.steps, 1):
                rows.append(
                    [
                        f"    {number}. {step.label}",
                        term.styled(step.state, step_state(term, step)),
                        "",
                        "",
                        duration(step.duration),
                    ]
                )
    table(term, ["WHAT", "STATE", "RAN ON", "ATTEMPT", "DURATION"], rows)
    for context in run.contexts():
        if context.waiting is not None:
            _question(term, run, context)


def _question(term: Terminal, run: RunView, context: ContextView) -> None:
    """What a Waiting context asks, and how to answer it."""
    asked = context.waiting or {}
    params = "".join(f" --param {name}=…" for name in asked.get("parameters") or [])
    where = f"{run.uuid[:8]} --context '{context.name}'"
    gate = "before it runs" if asked.get("gate") == "enter" else "before it counts as done"
    _line(term, Text(f"{context.name} waits {gate}: {asked.get('message', '')}", style="yellow"))
    _line(term, Text(f"  approve: otto approve {where}{params} [--comment …]"))
    _line(term, Text(f"  reject:  otto reject {where} [--comment …]"))


def rejection(term: Terminal, rejected: Rejection) -> None:
    """Why a run never ran: the reason, then the message as it is (its caret lines up)."""
    _line(term, Text(f"Rejected ({rejected.reason}): nothing of it ran", style="bold red"))
    for line in rejected.message.splitlines():
        term.write(line)


def abort_reason(run: RunView) -> str | None:
    """`aborted by user`, `superseded by 1a2b3c4d`: why an abort was asked, if one was."""
    if not run.abort_reason:
        return None
    said = ABORT_REASONS.get(run.abort_reason, f"aborted: {run.abort_reason}")
    newer = run.abort_data.get("superseded_by")
    return f"{said} by {str(newer)[:8]}" if newer else said


def step_state(term: Terminal, step: StepView) -> str:
    return term.state(step.state) + reason_note(step) + exit_note(step.exit_code)


def context_name(context: ContextView) -> str:
    """Its name; a hook's says what it reacts to: `Deploy rollback · rollback of Deploy`."""
    return f"{context.name} · {reacts_to(context.hook)}" if context.hook else context.name


def context_note(context: ContextView) -> str:
    """Why a context ended so: a skipped one's condition, or the outcome a hook that was
    not triggered saw; else its reason."""
    if context.state == "Skipped" and context.hook and context.reason == "not_triggered":
        return f": {why_not_triggered(context.hook)}"
    if context.state == "Skipped" and context.condition:
        return f": when {{ {context.condition} }} was false"
    return reason_note(context)


def reason_note(ended: StepView | ContextView) -> str:
    """`: timeout`, `: agent_lost`: why a step or context ended so, unless its exit code
    says it all."""
    reason = ended.reason
    if not reason or reason.startswith("exit code"):
        return ""
    return f": {reason if len(reason) <= REASON_WIDTH else reason[: REASON_WIDTH - 1] + '…'}"


def event(term: Terminal, transition: dict[str, Any]) -> None:
    at = timestamp(transition.get("at"))
    when = at.astimezone().strftime("%H:%M:%S.%f")[:-3] if at else "-"
    ident = str(transition["id"])
    if transition["entity"] == "batch" and ident.isdigit():
        ident = str(int(ident) + 1)  # batches are numbered from 1, as everywhere people look
    ident = ident[:8] if len(ident) > 8 else ident
    before = transition.get("from") or "∅"
    to = transition["to"]
    extra = "  ".join(
        str(value)
        for value in (transition.get("status"), transition.get("reason"), transition.get("actor"))
        if value
    )
    line = (
        f"{transition['seq']:>6}  {when}  {str(transition['pipeline'])[:8]}  "
        f"{transition['entity']:<8} {ident:<8}  {before} → {to}"
    )
    text = Text(line, style=term.style(to))
    if extra:
        text.append(f"  {extra}", style="dim")
    _line(term, text)


def _line(term: Terminal, text: Text) -> None:
    if term.tty:
        term.console().print(text, overflow="ellipsis", no_wrap=True, crop=True)
    else:
        term.write(text.plain)


def replay(term: Terminal, verdict: dict[str, Any]) -> None:
    """`consistent`, or the run and each difference: a field whose stored value is not the
    replayed one, or a logged transition replay cannot follow (its seq and why)."""
    if verdict["consistent"]:
        term.write("consistent")
        return
    found = plural(len(verdict["differences"]), "difference")
    term.write(f"pipeline {verdict['pipeline']}: {found}")
    for d in verdict["differences"]:
        where = f"  {d['entity']} {d['id']}"
        if d["field"] == "transition":
            term.write(f"{where} transition #{d['seq']} {d['stored']}: {d['message']}")
        else:
            term.write(f"{where} {d['field']}: stored {d['stored']}, replayed {d['replayed']}")
