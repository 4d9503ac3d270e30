"""How states, times and names look on the page: Jinja filters, one place for each."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from markupsafe import Markup, escape
from pydantic import JsonValue

from otto.duration import format_duration
from otto.model import Step
from otto.objectstore.keys import step_log_key
from otto.psm import Transition
from otto.redact import redact_url

# Every state an entity can show, with an icon: colour is never the only signal.
ICONS = {
    "Pending": "○",
    "Running": "◐",
    "AuctionStarted": "◔",
    "AuctionCompleted": "◑",
    "Provisioning": "◕",
    "Executing": "◐",
    "Aborting": "⊘",
    "Complete": "●",
    "NotRun": "–",
    "Skipped": "↷",
    "Waiting": "◇",
    "Success": "✓",
    "Unstable": "◒",
    "Aborted": "⊘",
    "Failed": "✗",
    "Error": "⚠",
}
LIVE = frozenset({"Running", "AuctionStarted", "AuctionCompleted", "Provisioning", "Executing"})
FAILING = ("Failed", "Error", "Unstable")  # the outcomes a run page opens a log for
LABEL_WIDTH = 40


def shown(item: dict[str, Any]) -> str:
    """What to show for a pipeline, batch, context or step: its outcome once it has one;
    a run with a context waiting at an approval gate, Waiting."""
    if item.get("waiting") is True and not item.get("status"):
        return "Waiting"
    return str(item.get("status") or item["state"])


def gate_conditions(model: dict[str, Any]) -> dict[str, str]:
    """The condition of each context of a run's model that has one (`when { … }`), by uuid."""
    found = {}
    for batch in model.get("batches", []):
        for ctx in batch.get("contexts", []):
            condition = (ctx.get("gate") or {}).get("condition")
            if condition:
                found[ctx["uuid"]] = str(condition["source"])
    return found


def gate_inputs(model: dict[str, Any]) -> dict[str, list[str]]:
    """The approval gates (`enter`, `exit`) of each context of a run's model that has any,
    by uuid."""
    found = {}
    for batch in model.get("batches", []):
        for ctx in batch.get("contexts", []):
            gate = ctx.get("gate") or {}
            kinds = [kind for kind in ("enter", "exit") if gate.get(f"{kind}_input")]
            if kinds:
                found[ctx["uuid"]] = kinds
    return found


def icon(state: str) -> str:
    return ICONS.get(state, "•")


def css(state: str) -> str:
    """The state's class: `st-failed`, … (live states share one, for the spinner)."""
    return "st-live" if state in LIVE else f"st-{state.lower()}"


def moment(value: str | float | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(value)


def clock(value: str | float | None) -> str:
    """`2026-11-30 16:42:05` (UTC), or an empty string."""
    at = moment(value)
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else ""


def clock_ms(value: str | float | None) -> str:
    at = moment(value)
    return at.strftime("%H:%M:%S.%f")[:-3] if at else ""


def duration(start: str | float | None, end: str | float | None = None) -> str:
    """`850 ms`, `12.3 s`, `4 m 05 s`; running things count up to now."""
    began = moment(start)
    if began is None:
        return ""
    ended = moment(end)
    seconds = (ended.timestamp() if ended else time.time()) - began.timestamp()
    return format_duration(max(0.0, seconds), spaced=True)


def bytesize(size: int) -> str:
    """`95.4 MB`, `12 KB` (as the page's script says it)."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    return f"{-(-size // 1024)} KB"


def short_ref(ref: str | None) -> str:
    if not ref:
        return ""
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref.removeprefix(prefix)
    return ref


def short_sha(sha: str | None) -> str:
    return sha[:8] if sha else ""


# The run page's hot loops (2,000 timeline rows, 1,000 step links) are rendered here, in
# Python, with the few distinct words they repeat escaped once: a Jinja macro or call per
# row would cost the page most of its time budget.


@lru_cache(maxsize=4096)
def _escaped(text: str) -> str:
    return str(escape(text))


@lru_cache(maxsize=256)
def state(value: str, label: str | None = None) -> Markup:
    """A state as the page shows it: icon, word and colour."""
    return Markup(
        f'<span class="state {css(value)}" data-state="{_escaped(value)}">'
        f'<span class="icon" aria-hidden="true">{icon(value)}</span>'
        f" {_escaped(label or value)}</span>"
    )


def timeline(transitions: list[Transition], names: dict[str, str]) -> Markup:
    """The rows of a run's transitions timeline."""
    return Markup("".join(_timeline_row(t, names) for t in transitions))


def _timeline_row(t: Transition, names: dict[str, str]) -> str:
    what = names.get(t.id) or f"{t.entity} {t.id[:8]}"
    status = f" ({_escaped(t.status)})" if t.status and t.status != t.to_state else ""
    return (
        f'<tr data-seq="{t.seq}"><td>{t.seq}</td><td><time>{clock_ms(t.at)}</time></td>'
        f"<td>{_escaped(what)}</td><td>{_escaped(t.from_state or '∅')} → {state(t.to_state)}"
        f"{status}</td><td>{_escaped(t.reason or '')}</td><td>{_escaped(t.actor)}</td></tr>\n"
    )


@dataclass(frozen=True)
class Described:
    """A step as its chip shows it (`sh: make test`), with its block's steps, if any: those
    have a log each but no state of their own (their block's step has the outcome)."""

    uuid: str
    label: str
    nested: tuple[Described, ...] = ()


def step_label(symbol: str, parameters: JsonValue) -> str:
    """`sh: make test`: the symbol and its `label` (`sh script: '…', label: 'Build'`), else
    the first line of its first text parameter."""
    values = parameters.values() if isinstance(parameters, dict) else parameters
    label = parameters.get("label") if isinstance(parameters, dict) else None
    text = label if isinstance(label, str) and label.strip() else ""
    text = text or next((v for v in values or [] if isinstance(v, str) and v.strip()), "")
    if not text:
        return symbol
    label = f"{symbol}: {text.strip().splitlines()[0].strip()}"
    return label if len(label) <= LABEL_WIDTH else label[: LABEL_WIDTH - 1] + "…"


def describe(model: dict[str, Any]) -> dict[str, Described]:
    """Every step of a run's model by uuid, nested ones too."""
    found: dict[str, Described] = {}

    def add(step: Step) -> Described:
        nested = tuple(add(inner) for inner in step.block_steps())
        found[step.uuid] = Described(step.uuid, step_label(step.symbol, step.parameters), nested)
        return found[step.uuid]

    for batch in model.get("batches", []):
        for context in batch.get("contexts", []):
            for raw in context.get("steps", []):
                add(Step.model_validate(raw))
    return found


def walk(described: Described, number: str) -> Iterator[tuple[str, Described]]:
    """A block's steps, depth first (the order they run in), numbered `2.1`, `2.1.1`, …"""
    for index, inner in enumerate(described.nested, 1):
        yield f"{number}.{index}", inner
        yield from walk(inner, f"{number}.{index}")


def steps(pipeline: str, context: dict[str, Any], described: dict[str, Described]) -> Markup:
    """A context's steps in its box: links that open their live logs (`?step=` without JS),
    each followed by its block's steps."""
    return Markup(
        "".join(
            _step_item(pipeline, context, n, s, described.get(s["uuid"]))
            for n, s in enumerate(context["steps"], 1)
        )
    )


def _step_item(
    pipeline: str,
    context: dict[str, Any],
    number: int,
    step: dict[str, Any],
    described: Described | None,
) -> str:
    value = shown(step)
    spent = duration(step["started_at"], step["finished_at"]) if step["started_at"] else ""
    label = described.label if described else step["symbol"]
    return (
        f"<li>{_step_link(pipeline, context, step['uuid'], f'{number}. {label}', value)}"
        f'<span class="icon" aria-hidden="true">{icon(value)}</span> {_escaped(label)}'
        f' <span class="sr">({value})</span>'
        + (f' <span class="dur">{spent}</span>' if spent else "")
        + "</a>"
        + (_nested(pipeline, context, described, str(number), value) if described else "")
        + "</li>\n"
    )


def _nested(
    pipeline: str, context: dict[str, Any], parent: Described, number: str, value: str
) -> str:
    """A block's steps under its step. They have no state of their own: their links carry
    the block's (a log is complete once its block has ended)."""
    if not parent.nested:
        return ""
    items = "".join(
        f"<li>{_step_link(pipeline, context, inner.uuid, f'{path}. {inner.label}', value, True)}"
        f'<span class="icon" aria-hidden="true">↳</span> {_escaped(inner.label)}</a>'
        f"{_nested(pipeline, context, inner, path, value)}</li>"
        for path, inner in ((f"{number}.{n}", inner) for n, inner in enumerate(parent.nested, 1))
    )
    return f'<ol class="steps nested">{items}</ol>'


def _step_link(
    pipeline: str, context: dict[str, Any], uuid: str, title: str, value: str, nested: bool = False
) -> str:
    """The opening tag of a step's link (its log's key and title for the page's script)."""
    key = step_log_key(pipeline, context["uuid"], uuid)
    full_title = f"{context['name']} › {title}"
    look = "st-nested" if nested else css(value)
    return (
        f'<a class="step {look}" id="step-{uuid}" href="?step={uuid}#log"'
        f' data-key="{_escaped(key)}" data-title="{escape(full_title)}"'
        f' data-state="{value}">'
    )


def log_lines(first: int, lines: list[str]) -> Markup:
    """A log window's lines, numbered from `first`: each an `L<n>` anchor whose number
    (drawn by CSS, so copied text and the page's text are the log's) links to it."""
    return Markup(
        "".join(
            f'<span class="line" id="L{n}"><a class="ln" href="#L{n}" data-n="{n}"'
            f' aria-label="line {n}"></a>{escape(text)}\n</span>'
            for n, text in enumerate(lines, first)
        )
    )


FILTERS = {
    "shown": shown,
    "icon": icon,
    "css": css,
    "clock": clock,
    "clock_ms": clock_ms,
    "duration": duration,
    "bytesize": bytesize,
    "short_ref": short_ref,
    "short_sha": short_sha,
    "redact_url": redact_url,
}
