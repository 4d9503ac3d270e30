"""`ParseError`: where an Ottofile is wrong, what was expected, and the line with a caret."""

from __future__ import annotations

from typing import Any

# Lines longer than this are shown as a window around the column.
_EXCERPT_WIDTH = 120


class ParseError(Exception):
    """An invalid Ottofile. `line` and `column` are 1-based; `excerpt` is the source line."""

    def __init__(
        self,
        filename: str,
        line: int,
        column: int,
        message: str,
        expected: list[str] | None = None,
        excerpt: str = "",
    ) -> None:
        super().__init__(filename, line, column, message, expected, excerpt)
        self.filename = filename
        self.line = line
        self.column = column
        self.message = message
        self.expected = list(expected or [])
        self.excerpt = excerpt

    def __str__(self) -> str:
        shown, caret_at = _window(self.excerpt, self.column - 1)
        # Control characters would garble a terminal; each is still one column wide.
        shown = "".join(ch if ch.isprintable() or ch == "\t" else "\ufffd" for ch in shown)
        # Keep tabs in the caret line so the caret sits under the column in any tab width.
        pad = "".join("\t" if ch == "\t" else " " for ch in shown[:caret_at])
        return f"{self.filename}:{self.line}:{self.column}: {self.message}\n{shown}\n{pad}^"

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the HTTP API's 400 answer."""
        return {
            "filename": self.filename,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "expected": self.expected,
        }


def _window(line: str, index: int) -> tuple[str, int]:
    if len(line) <= _EXCERPT_WIDTH:
        return line, index
    start = max(0, min(index - _EXCERPT_WIDTH // 2, len(line) - _EXCERPT_WIDTH))
    end = start + _EXCERPT_WIDTH
    prefix = "…" if start > 0 else ""
    suffix = "…" if end < len(line) else ""
    return prefix + line[start:end] + suffix, index - start + len(prefix)


def position(text: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of a character offset."""
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def error_at(
    text: str,
    filename: str,
    offset: int,
    message: str,
    expected: list[str] | None = None,
) -> ParseError:
    """A ParseError pointing at a character offset of `text`."""
    offset = max(0, min(offset, len(text)))
    line_start = text.rfind("\n", 0, offset) + 1
    line_end = text.find("\n", offset)
    excerpt = text[line_start:] if line_end < 0 else text[line_start:line_end]
    line = text.count("\n", 0, offset) + 1
    return ParseError(filename, line, offset - line_start + 1, message, expected, excerpt)
