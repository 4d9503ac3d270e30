"""How states, times and names look on the page: Jinja filters, one place for each."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from markupsafe import Markup, escape

from otto.agent.reporter import step_log_key
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
    "Success": "✓",
    "Unstable": "◒",
    "Aborted": "⊘",
    "Failed": "✗",
    "Error": "⚠",
}
LIVE = frozenset({"Running", "AuctionStarted", "AuctionCompleted", "Provisioning", "Executing"})


def shown(item: dict[str, Any]) -> str:
    """What to show for a pipeline, batch, context or step: its outcome once it has one."""
    return str(item.get("status") or item["state"])


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
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


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


def steps(pipeline: str, context: dict[str, Any]) -> Markup:
    """A context's steps in its box: links that open their live logs (`?step=` without JS)."""
    return Markup(
        "".join(_step_item(pipeline, context, n, s) for n, s in enumerate(context["steps"], 1))
    )


def _step_item(pipeline: str, context: dict[str, Any], number: int, step: dict[str, Any]) -> str:
    value = shown(step)
    spent = duration(step["started_at"], step["finished_at"]) if step["started_at"] else ""
    key = step_log_key(pipeline, context["uuid"], step["uuid"])
    title = f"{context['name']} › {number}. {step['symbol']}"
    return (
        f'<li><a class="step {css(value)}" id="step-{step["uuid"]}" href="?step={step["uuid"]}#log"'
        f' data-key="{_escaped(key)}" data-title="{_escaped(title)}" data-state="{value}">'
        f'<span class="icon" aria-hidden="true">{icon(value)}</span> {_escaped(step["symbol"])}'
        f' <span class="sr">({value})</span>'
        + (f' <span class="dur">{spent}</span>' if spent else "")
        + "</a></li>\n"
    )


FILTERS = {
    "shown": shown,
    "icon": icon,
    "css": css,
    "clock": clock,
    "clock_ms": clock_ms,
    "duration": duration,
    "short_ref": short_ref,
    "short_sha": short_sha,
    "redact_url": redact_url,
}
