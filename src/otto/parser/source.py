"""The pre-pass: bytes to text, and comments blanked out in one linear scan.

Comments nest (`/* a /* b */ c */`), which no regular expression can match and
which a recursive grammar would turn into a RecursionError on 5,000 nested
`/*`. So before lark sees the text, every comment is replaced by spaces
(newlines are kept), which leaves every line and column where it was. The scan
knows strings, so `'//'` and `'/*'` inside a string are not comments, and it
reports an unterminated string or comment where it opens.
"""

from __future__ import annotations

import re

from otto.parser.errors import ParseError, error_at

# Everything up to the next comment, stray `*/` or unterminated string: plain
# characters, whole strings (an `''` escape is two adjacent strings here), and a
# `*` or `/` that starts no comment. Atomic and possessive, so it never backtracks.
_PLAIN = re.compile(r"(?>[^'/*]+|'[^']*'|\*(?!/)|/(?![/*]))*+")
_NESTING = re.compile(r"/\*|\*/")


def decode(data: str | bytes, filename: str) -> str:
    """UTF-8 text with a leading BOM dropped and line breaks normalised to `\\n`.

    Line breaks are normalised as YAML does: a file saved with CR LF line ends
    means the same as one saved with LF, inside multi-line strings too.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _bad_byte(raw, exc.start, filename) from None
    elif isinstance(data, str):
        text = data
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate: no file can hold it
            raise error_at(
                text, filename, exc.start, f"invalid character U+{ord(text[exc.start]):04X}"
            ) from None
    else:
        raise TypeError(f"an Ottofile is str or bytes, not {type(data).__name__}")
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _bad_byte(raw: bytes, start: int, filename: str) -> ParseError:
    line_start = raw.rfind(b"\n", 0, start) + 1
    line_end = raw.find(b"\n", start)
    line_bytes = raw[line_start:] if line_end < 0 else raw[line_start:line_end]
    column = len(raw[line_start:start].decode("utf-8", errors="replace")) + 1
    excerpt = line_bytes.decode("utf-8", errors="replace").rstrip("\r")
    return ParseError(
        filename,
        raw.count(b"\n", 0, start) + 1,
        column,
        f"invalid UTF-8 byte 0x{raw[start]:02x}: an Ottofile must be UTF-8 text",
        ["UTF-8 text"],
        excerpt,
    )


def _blank(comment: str) -> str:
    if "\n" not in comment:
        return " " * len(comment)
    return "\n".join(" " * len(part) for part in comment.split("\n"))


def strip_comments(text: str, filename: str) -> str:
    """`text` with every comment replaced by spaces; raises ParseError for an unclosed one."""
    spans = comment_spans(text, filename)
    if not spans:
        return text
    pieces: list[str] = []
    kept = 0  # text[kept:start] is copied as is
    for start, end in spans:
        pieces.append(text[kept:start])
        pieces.append(_blank(text[start:end]))
        kept = end
    pieces.append(text[kept:])
    return "".join(pieces)


def comment_spans(text: str, filename: str) -> list[tuple[int, int]]:
    """(start, end) offsets of every comment, in order (a `//` one ends before its newline);
    raises ParseError for an unclosed comment or string, or a stray `*/`."""
    if "/" not in text:  # no comment, no stray `*/`
        return []
    spans: list[tuple[int, int]] = []
    size = len(text)
    pos = 0
    plain = _PLAIN.match
    while True:
        pos = plain(text, pos).end()
        if pos >= size:
            return spans
        char = text[pos]
        if char == "'":
            raise error_at(text, filename, pos, "unterminated string", ['a closing "\'"'])
        follow = text[pos + 1]
        if char == "*":  # `*/` outside a comment
            raise error_at(text, filename, pos, "'*/' without a matching '/*'")
        if follow == "/":
            end = text.find("\n", pos)
            end = size if end < 0 else end
        else:
            end = _comment_end(text, pos, filename)
        spans.append((pos, end))
        pos = end


def _comment_end(text: str, start: int, filename: str) -> int:
    """End offset of the nesting block comment opening at `start`, found without recursion."""
    depth = 0
    for match in _NESTING.finditer(text, start):
        if match.group() == "/*":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return match.end()
    message = "unterminated comment: '/*' (opened here) has no matching '*/'"
    if depth > 1:
        message += f"; comments nest, and {depth - 1} nested '/*' inside it are still open"
    raise error_at(text, filename, start, message, ["'*/'"])
