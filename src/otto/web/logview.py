"""What the run page shows of a log: a window of numbered lines, as plain text.

The window is a log's last `LINES` lines, or those around a linked line (`?line=42`).
Lines are numbered from the log's start, so `#L42` names the same line however much of
the log a page shows; the page's script reads the raw bytes of the same window (from
`start`, numbering from `first`) to colour them, and follows the log from `end`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from otto.objectstore.base import ObjectStore

LINES = 200  # lines a window shows
WINDOW_BYTES = 256 * 1024  # most bytes a window reads
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


@dataclass(frozen=True)
class LogWindow:
    """Lines `first`… of a log of `size` bytes: bytes [`start`, `end`)."""

    key: str
    title: str
    state: str
    size: int = 0
    start: int = 0
    end: int = 0
    first: int = 1
    lines: list[str] = field(default_factory=list)

    @property
    def at_end(self) -> bool:
        return self.end >= self.size

    @property
    def last(self) -> int:
        return self.first + len(self.lines) - 1


def tail(objects: ObjectStore, key: str, title: str, state: str) -> LogWindow:
    """The log's last lines."""
    size = objects.head(key).size
    begin = max(0, size - WINDOW_BYTES)
    lines = _split(objects.get_range(key, begin, size))
    if begin > 0 and len(lines) > 1:
        lines.pop(0)  # the read began inside this line
    kept = lines[-LINES:]
    start = size - sum(len(line) for line in kept)
    first = _count_newlines(objects, key, start) + 1
    return LogWindow(key, title, state, size, start, size, first, _text(kept))


def around(objects: ObjectStore, key: str, title: str, state: str, line: int) -> LogWindow:
    """The lines around line `line`; the last lines when the log has fewer."""
    wanted = max(1, line - LINES // 2)
    start = _line_offset(objects, key, wanted)
    if start is None:
        return tail(objects, key, title, state)
    size = objects.head(key).size
    lines = _split(objects.get_range(key, start, start + WINDOW_BYTES))[:LINES]
    if start + WINDOW_BYTES < size and len(lines) > 1 and not lines[-1].endswith(b"\n"):
        lines.pop()  # cut by the read
    end = start + sum(len(line) for line in lines)
    return LogWindow(key, title, state, size, start, end, wanted, _text(lines))


def _split(data: bytes) -> list[bytes]:
    """Lines, each with its newline (the last may have none). Only `\\n` ends a line:
    the raw log and the page's script count lines the same way."""
    parts = data.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    return [*lines, parts[-1]] if parts[-1] else lines


def _text(lines: list[bytes]) -> list[str]:
    return [strip_escapes(line.decode("utf-8", "replace").removesuffix("\n")) for line in lines]


def _count_newlines(objects: ObjectStore, key: str, end: int) -> int:
    if end <= 0:
        return 0
    with objects.open(key, 0, end) as chunks:
        return sum(chunk.count(b"\n") for chunk in chunks)


def _line_offset(objects: ObjectStore, key: str, line: int) -> int | None:
    """Where line `line` (from 1) begins; None when the log has no such line."""
    if line == 1:
        return 0
    seen, offset = 0, 0
    with objects.open(key) as chunks:
        for chunk in chunks:
            count = chunk.count(b"\n")
            if seen + count >= line - 1:
                at = -1
                for _ in range(line - 1 - seen):
                    at = chunk.index(b"\n", at + 1)
                return offset + at + 1
            seen, offset = seen + count, offset + len(chunk)
    return None
