"""What `otto ps`, `otto show` and `otto events` print."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from otto.client.terminal import Cell, Terminal, age, duration, table
from otto.client.view import RunView, StepView, elapsed, timestamp


def pipeline_state(summary: dict[str, Any]) -> str:
    if summary["state"] == "Complete":
        return summary.get("status") or "Complete"
    return "Aborting" if summary.get("abort_requested") else summary["state"]


def ps(term: Terminal, pipelines: list[dict[str, Any]]) -> None:
    if not pipelines:
        term.write("no pipelines")
        return
    rows: list[list[Cell]] = []
    for p in pipelines:
        state = pipeline_state(p)
        created = timestamp(p.get("created_at"))
        end = timestamp(p.get("updated_at")) if p["state"] == "Complete" else None
        rows.append(
            [
                p["uuid"][:8],
                term.styled(state),
                p.get("project") or p.get("repo") or "-",
                p.get("ref") or "-",
                p.get("trigger") or "-",
                age(created),
                duration(elapsed(created, end)),
            ]
        )
    table(term, ["UUID", "STATUS", "PROJECT", "REF", "TRIGGER", "AGE", "DURATION"], rows)


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
    _line(term, Text(""))
    rows: list[list[Cell]] = []
    total = len(run.batches)
    for batch in run.batches:
        state = batch.status if batch.state == "Complete" and batch.status else batch.state
        label = f"Batch {batch.index + 1}/{total} · {batch.mode}"
        rows.append([Text(label, style="bold"), term.styled(state), "", "", ""])
        for context in batch.contexts:
            rows.append(
                [
                    f"  {context.name}",
                    term.styled(context.state),
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


def step_state(term: Terminal, step: StepView) -> str:
    text = term.state(step.state)
    if step.exit_code not in (None, 0):
        text += f" (exit {step.exit_code})"
    return text


def event(term: Terminal, transition: dict[str, Any]) -> None:
    at = timestamp(transition.get("at"))
    when = at.astimezone().strftime("%H:%M:%S.%f")[:-3] if at else "-"
    ident = str(transition["id"])
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
