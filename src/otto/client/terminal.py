"""How states look in a terminal: a symbol for each (so colour is never the only cue),
its colour, and short durations and ages. `Terminal` says whether stdout is a TTY."""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from rich.console import Console
from rich.text import Text

from otto.client.view import now
from otto.duration import format_duration

# state → (symbol, ASCII stand-in, rich style)
_LOOKS: dict[str, tuple[str, str, str]] = {
    "Success": ("✓", "+", "green"),
    "Unstable": ("!", "!", "yellow"),
    "Failed": ("✗", "x", "red"),
    "Aborted": ("⊘", "/", "magenta"),
    "Error": ("◆", "E", "bold red"),
    "Aborting": ("◌", "~", "magenta"),
    "Running": ("●", ">", "cyan"),
    "Executing": ("●", ">", "cyan"),
    "AuctionStarted": ("◐", "~", "cyan"),
    "AuctionCompleted": ("◐", "~", "cyan"),
    "Provisioning": ("◐", "~", "cyan"),
    "Pending": ("○", ".", "dim"),
    "NotRun": ("–", "-", "dim"),
    "Skipped": ("↷", ">", "dim"),
    "Waiting": ("◇", "?", "yellow"),  # held at an approval gate's input
    "Complete": ("✓", "+", "green"),
}
_UNKNOWN = ("?", "?", "")


def duration(seconds: float | None) -> str:
    """`4.2s`, `3m05s`; `-` when it is not known."""
    return "-" if seconds is None else format_duration(seconds)


def exit_note(code: int | None) -> str:
    """How a step's process ended, when it did not exit 0: ` (exit 7)`, or
    ` (killed by SIGTERM)` for a process a signal ended (a negative exit code)."""
    if code is None or code == 0:
        return ""
    if code > 0:
        return f" (exit {code})"
    try:
        return f" (killed by {signal.Signals(-code).name})"
    except ValueError:
        return f" (killed by signal {-code})"


def plural(count: int, noun: str) -> str:
    """`1 batch`, `2 batches`, `3 contexts`."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun}es" if noun.endswith(("s", "sh", "ch", "x")) else f"{count} {noun}s"


def short_ref(ref: str | None) -> str:
    """A ref as people say it: `main` for refs/heads/main, `tag v1.0` for refs/tags/v1.0."""
    if not ref:
        return "-"
    if ref.startswith("refs/heads/"):
        return ref.removeprefix("refs/heads/")
    if ref.startswith("refs/tags/"):
        return "tag " + ref.removeprefix("refs/tags/")
    return ref


def age(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = (now() - when).total_seconds()
    if seconds < 5:
        return "just now"
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m ago"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h ago"
    return f"{seconds // 86400:.0f}d ago"


def _can_encode(stream: TextIO, text: str) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


@dataclass
class Terminal:
    """Where the CLI writes: rich (colours, tables, live views) on a TTY, plain text else."""

    stream: TextIO
    tty: bool
    unicode: bool
    _console: Console | None = field(default=None, repr=False)

    @classmethod
    def of(cls, stream: TextIO | None = None) -> Terminal:
        stream = stream or sys.stdout
        isatty = getattr(stream, "isatty", None)
        tty = bool(isatty and isatty())
        return cls(stream, tty, _can_encode(stream, "✓✗⊘◆◌●◐○–…›·→"))

    def console(self) -> Console:
        if self._console is None:
            self._console = Console(
                file=self.stream, highlight=False, emoji=False, force_terminal=self.tty
            )
        return self._console

    def symbol(self, state: str | None) -> str:
        looks = _LOOKS.get(state or "", _UNKNOWN)
        return looks[0] if self.unicode else looks[1]

    def style(self, state: str | None) -> str:
        return _LOOKS.get(state or "", _UNKNOWN)[2]

    def state(self, state: str | None) -> str:
        """`✓ Success`: the symbol and the name, for plain output."""
        return f"{self.symbol(state)} {state or '-'}"

    def styled(self, state: str | None, text: str | None = None) -> Text:
        return Text(text or self.state(state), style=self.style(state))

    def ascii(self, text: str) -> str:
        """`text` with the few typographic characters the CLI uses made ASCII if need be."""
        if self.unicode:
            return text
        for fancy, plain in (("…", "..."), ("›", ">"), ("·", "-"), ("→", "->"), ("–", "-")):
            text = text.replace(fancy, plain)
        return text.encode("ascii", "replace").decode("ascii")

    def write(self, text: str = "") -> None:
        self.stream.write(self.ascii(text) + "\n")


def columns(rows: list[list[str]], gap: int = 2) -> list[str]:
    """Rows of cells as left-aligned text columns (the last one not padded)."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    pad = " " * gap
    return [
        pad.join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


Cell = str | Text


def table(term: Terminal, header: list[str], rows: list[list[Cell]]) -> None:
    """A table: rich (coloured, fitted to the width) on a TTY, plain text columns else."""
    if term.tty:
        from rich import box
        from rich.table import Table

        grid = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
        for name in header:
            grid.add_column(name, no_wrap=name != header[0], overflow="ellipsis")
        for row in rows:
            grid.add_row(*row)
        term.console().print(grid)
        return
    plain = [[c.plain if isinstance(c, Text) else c for c in row] for row in rows]
    for line in columns([header, *plain]):
        term.write(line)
