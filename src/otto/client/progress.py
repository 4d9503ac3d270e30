"""The live view of `otto run`: a rich Live table on a TTY; else one line per context
outcome and step failure (per transition with `every_transition`: `otto run --events`).

Both take the same calls: `start(run)`, `update(run, transition)` after the
view moved along, `note(text)`, `stop(run)`.
"""

from __future__ import annotations

from typing import Any, Protocol

from rich.console import Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from otto.client.render import context_name
from otto.client.terminal import Terminal, duration, exit_note, plural
from otto.client.view import FINISHED, ContextView, RunView, elapsed, timestamp
from otto.hooks import AFTER_THE_RUN


class Progress(Protocol):
    def start(self, run: RunView) -> None: ...
    def update(self, run: RunView, transition: dict[str, Any]) -> None: ...
    def note(self, text: str) -> None: ...
    def stop(self, run: RunView) -> None: ...


# What a step ends as that is worth a line of its own without --events.
STEP_TROUBLE = frozenset({"Failed", "Error", "Unstable"})


def progress_for(term: Terminal, every_transition: bool = False) -> Progress:
    if term.tty and not every_transition:
        return LiveProgress(term)
    return LineProgress(term, every_transition)


def _batch_state(state: str, status: str | None) -> str:
    return status if state == "Complete" and status else state


def _says_more(reason: str, state: str) -> bool:
    """Whether a transition's reason adds to its new state (`exit code 1` does not)."""
    return not reason.startswith("exit code") and reason.lower() != state.lower()


class LineProgress:
    """Plain text, `[+1.2s] ✗ Build › 1. sh 'make': Failed (exit 2) …`: a line per context
    outcome and step failure, or per transition (`every_transition`)."""

    def __init__(self, term: Terminal, every_transition: bool = False) -> None:
        self.term = term
        self.every_transition = every_transition

    def start(self, run: RunView) -> None:
        contexts = sum(len(b.contexts) for b in run.batches)
        self.term.write(
            f"otto: pipeline {run.uuid}: {plural(len(run.batches), 'batch')}, "
            f"{plural(contexts, 'context')}"
        )
        self.term.stream.flush()

    def update(self, run: RunView, transition: dict[str, Any]) -> None:
        if not (self.every_transition or self.notable(transition)):
            return
        at = elapsed(run.created_at, timestamp(transition.get("at")))
        line = self.describe(run, transition)
        if line:
            self.term.write(f"[+{duration(at):>6}] {line}")
            self.term.stream.flush()

    @staticmethod
    def notable(t: dict[str, Any]) -> bool:
        """A context's outcome, or a step's failure: what a log of the run must say."""
        if t["entity"] == "context":
            return t["to"] in FINISHED
        return t["entity"] == "step" and t["to"] in STEP_TROUBLE

    def describe(self, run: RunView, t: dict[str, Any]) -> str | None:
        term, to, ident = self.term, t["to"], str(t["id"])
        reason = str(t.get("reason") or "")
        if t["entity"] == "pipeline":
            state = t.get("status") or to
            return f"{term.symbol(state)} pipeline: {state}"
        if t["entity"] == "batch":
            batch = next((b for b in run.batches if str(b.index) == ident), None)
            if batch is None:
                return None
            state = _batch_state(to, t.get("status"))
            what = f"batch {batch.index + 1}/{len(run.batches)} {batch.mode}"
            return f"{term.symbol(state)} {what}: {state}"
        if t["entity"] == "context":
            context = run.context(ident)
            if context is None:
                return None
            line = f"{term.symbol(to)} {context_name(context)}: {to}"
            if to == "Running":
                line += f" on {context.orchestrator or '?'} (attempt {context.attempt})"
            elif to in FINISHED and context.duration is not None:
                line += f" in {duration(context.duration)}"
            if reason and to != "Running" and _says_more(reason, to):
                line += f" ({reason})"
            return line
        found = run.step(ident)
        if found is None:
            return None
        context, step = found
        number = context.steps.index(step) + 1
        line = f"{term.symbol(to)} {context.name} › {number}. {step.label}: {to}"
        if to in FINISHED:
            if reason and _says_more(reason, to):
                line += f": {reason}"
            line += exit_note(step.exit_code)
            if step.duration is not None:
                line += f" in {duration(step.duration)}"
        return line

    def note(self, text: str) -> None:
        self.term.write(f"otto: {text}")
        self.term.stream.flush()

    def stop(self, run: RunView) -> None:
        pass


class LiveProgress:
    """A table of batches and contexts, redrawn in place, with spinners while running."""

    def __init__(self, term: Terminal) -> None:
        self.term = term
        self.run: RunView | None = None
        self.notes: list[str] = []
        self.spinners: dict[str, Spinner] = {}
        self.live = Live(console=term.console(), refresh_per_second=8, get_renderable=self.render)

    def start(self, run: RunView) -> None:
        self.run = run
        self.live.start()

    def update(self, run: RunView, transition: dict[str, Any]) -> None:
        self.run = run

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.live.refresh()

    def stop(self, run: RunView) -> None:
        self.run = run
        self.live.refresh()
        self.live.stop()

    def render(self) -> RenderableType:
        run = self.run
        if run is None:
            return Text("")
        term = self.term
        head = Text.assemble(
            ("Pipeline ", "bold"),
            (run.uuid[:8], "bold"),
            "  ",
            term.styled(run.shown_state),
            f"  {duration(run.duration)}",
        )
        if not run.complete and not self.notes:
            head.append("   Ctrl-C aborts", style="dim")
        grid = Table.grid(padding=(0, 2))
        for _ in range(5):
            grid.add_column(no_wrap=True, overflow="ellipsis")
        height = term.console().size.height
        crowded = sum(1 + len(b.contexts) for b in run.batches) > height - 4
        first_hooks = next((b for b in run.batches if b.hooks), None)
        for batch in run.batches:
            if batch is first_hooks:
                grid.add_row("", Text(AFTER_THE_RUN, style="bold"), "", "", "")
            state = _batch_state(batch.state, batch.status)
            label = f"Batch {batch.index + 1}/{len(run.batches)} · {batch.mode}"
            grid.add_row(
                term.styled(state, term.symbol(state)),
                Text(label, style="bold"),
                term.styled(state, state),
                "",
                "",
            )
            if crowded and batch.state == "Complete" and batch.status == "Success":
                continue
            for context in batch.contexts:
                grid.add_row(
                    self._mark(context.uuid, context.state),
                    f"  {context_name(context)}",
                    term.styled(context.state, context.state),
                    duration(context.duration) if context.started_at else "",
                    self._doing(context),
                )
        parts: list[RenderableType] = [head, grid]
        parts += [Text(note, style="magenta") for note in self.notes]
        return Group(*parts)

    def _mark(self, key: str, state: str) -> RenderableType:
        if state in ("Running", "Aborting"):
            spinner = self.spinners.setdefault(key, Spinner("dots", style=self.term.style(state)))
            return spinner
        return self.term.styled(state, self.term.symbol(state))

    def _doing(self, context: ContextView) -> Text:
        step = context.current_step
        if step is None:
            return Text("")
        number = context.steps.index(step) + 1
        return Text(f"{number}/{len(context.steps)} {step.label}", style="dim")
