"""`parse()`: an Ottofile to a pipeline model, or a ParseError in words a person reads."""

from __future__ import annotations

import re
from collections.abc import Iterable

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from otto.model import Pipeline
from otto.parser.build import Positions, SemanticError, Syntax
from otto.parser.errors import ParseError, error_at
from otto.parser.grammar import HUMAN, PARSER
from otto.parser.source import decode, strip_comments

_ORDER = {name: i for i, name in enumerate(HUMAN)}
_BRACES = re.compile(r"'[^']*'|[{}]")
# What may follow a stage's `steps` block.
_AFTER_STEPS = {"RBRACE", "ROLLBACK", "NOTIFY"}
_WORD_BEFORE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)[ \t\f\v\n]*\Z")


def parse(text: str | bytes, filename: str = "<string>") -> Pipeline:
    """Parse an Ottofile into a Pipeline with fresh uuids; raise ParseError if it is invalid.

    Nothing but ParseError escapes, whatever the text (a TypeError if it is neither str
    nor bytes).
    """
    return parse_located(text, filename)[0]


def parse_located(text: str | bytes, filename: str = "<string>") -> tuple[Pipeline, Positions]:
    """`parse`, plus where each step (nested ones too) stands: uuid → (line, column)."""
    pipeline, positions, _ = parse_syntax(text, filename)
    return pipeline, positions


def parse_syntax(
    text: str | bytes, filename: str = "<string>"
) -> tuple[Pipeline, Positions, Syntax]:
    """`parse_located`, plus what the file says beyond its model: its `use` libraries and
    its `each` blocks (for `otto fmt` and `otto explain`)."""
    if not isinstance(text, str | bytes | bytearray | memoryview):
        raise TypeError(f"an Ottofile is str or bytes, not {type(text).__name__}")
    try:
        source = decode(text, filename)
        blanked = strip_comments(source, filename)
        try:
            located: tuple[Pipeline, Positions, Syntax] = PARSER.parse(blanked)
        except UnexpectedToken as exc:
            raise _unexpected_token(exc, source, blanked, filename) from None
        except UnexpectedCharacters as exc:
            raise _unexpected_character(exc, source, blanked, filename) from None
        except UnexpectedInput as exc:  # pragma: no cover - LALR raises the two above
            offset = exc.pos_in_stream or 0
            raise error_at(source, filename, offset, "invalid Ottofile") from None
        except SemanticError as exc:
            raise error_at(
                source, filename, exc.token.start_pos or 0, exc.message, exc.expected
            ) from None
        return located
    except ParseError:
        raise
    except Exception as exc:  # a bug of ours; still the caller gets a ParseError
        raise ParseError(filename, 1, 1, f"internal parser error: {exc!r}") from exc


def _words(names: list[str]) -> list[str]:
    known = sorted((n for n in set(names) if n in HUMAN), key=_ORDER.__getitem__)
    return [HUMAN[n] for n in known]


def _join(words: list[str]) -> str:
    if not words:
        return "nothing"
    if len(words) == 1:
        return words[0]
    return f"{', '.join(words[:-1])} or {words[-1]}"


def _describe(token: Token) -> str:
    if token.type == "STR" or (token.type == "VALUE" and token.value.startswith("'")):
        return "a string"
    value = token.value if len(token.value) <= 40 else token.value[:40] + "…"
    return f"'{value}'"


def _unexpected_token(exc: UnexpectedToken, source: str, blanked: str, filename: str) -> ParseError:
    token: Token = exc.token
    names = _expected_names(exc, exc.expected)
    expected = _words(names)
    if token.type == "$END":
        unclosed = _unclosed_brace(blanked)
        if unclosed is not None:
            what = _block_name(blanked, unclosed)
            return error_at(
                source,
                filename,
                unclosed,
                f"unclosed '{{' (opened here): {what} has no matching '}}'",
                ["'}'"],
            )
        offset = len(blanked.rstrip())
        found = "the end of the file"
    else:
        offset = token.start_pos or 0
        found = _describe(token)
    message = f"expected {_join(expected)}, found {found}"
    hint = _hint(token, set(names), blanked, offset)
    if hint:
        message += f" ({hint})"
    return error_at(source, filename, offset, message, expected)


def _hint(token: Token, names: set[str], blanked: str, offset: int) -> str:
    if token.type == "RBRACE" and names == {"STEP_NAME"}:
        before = len(blanked[:offset].rstrip()) - 1
        what = _block_name(blanked, before) if blanked[before : before + 1] == "{" else "a block"
        return f"{what} needs at least one step"
    if token.value == "stages" and "STAGE" in names:
        return (
            "a 'stages { … }' wrapper is not part of the language: "
            "write the 'stage' blocks without it"
        )
    if token.type == "RBRACE" and "STEPS" in names and "PROP_NAME" in names:
        return "a stage needs a 'steps' block"
    after_steps = "RBRACE" in names and names <= _AFTER_STEPS
    if after_steps and _innermost_block(blanked, offset) == "the 'stage' block":
        if token.value == "steps":
            return "a stage has exactly one 'steps' block"
        if token.value == "stage":
            return "is the '}' of the stage above missing?"
        return (
            "a stage's properties, 'environment' and gates go before its 'steps' block; "
            "only 'rollback' and 'notify' may follow it"
        )
    if names in ({"STEPS"}, {"RBRACE"}) and _innermost_block(blanked, offset) in _HOOK_BLOCKS:
        return f"{_innermost_block(blanked, offset)} holds exactly one 'steps {{ … }}' block"
    if names == {"RBRACE"} and _innermost_block(blanked, offset) == "the 'each' block":
        return "an 'each' block holds exactly one stage"
    if token.value.startswith("it") and "VALUE" in names:
        return "after 'it', another argument needs its comma: sh it, 'x'"
    if token.value == "concat" and "VALUE" in names:
        return "concat(…) takes strings and 'it' or 'it.AXIS', separated by commas"
    if token.value == "each" and "EACH" in names:
        return "'each' takes its values in parentheses: each('a', 'b') { stage { … } }"
    if token.type == "COLON" and "KEY" in names:
        return "a step takes positional arguments or keyword arguments, not both"
    if token.type == "STR" and "KEY" in names and "STR" not in names:
        return "a step takes positional arguments or keyword arguments, not both"
    if token.type == "RBRACE" and _open_braces(blanked, offset) == 0:
        return "this '}' closes nothing"
    return ""


def _unexpected_character(
    exc: UnexpectedCharacters, source: str, blanked: str, filename: str
) -> ParseError:
    offset = exc.pos_in_stream
    char = blanked[offset]
    if char == "'":
        return error_at(source, filename, offset, "unterminated string", ['a closing "\'"'])
    expected = _words(_expected_names(exc, exc.allowed or ()))
    shown = repr(char) if char.isprintable() else f"U+{ord(char):04X}"
    if shown.startswith('"'):
        shown = f"'{char}'"
    return error_at(
        source, filename, offset, f"expected {_join(expected)}, found {shown}", expected
    )


def _expected_names(exc: UnexpectedInput, fallback: Iterable[str]) -> list[str]:
    """The terminals the parser could take where it failed.

    LALR merges states, so lark's own set may include terminals that would fail
    one reduction later; replaying each candidate on a copy of the parser gives
    the exact set (skipped for absurdly deep inputs, where copying costs).
    """
    interactive = getattr(exc, "interactive_parser", None)
    if interactive is not None and len(interactive.parser_state.state_stack) <= 10_000:
        try:
            return _offered(interactive.accepts())
        except Exception:  # pragma: no cover - fall back to lark's own set
            pass
    return _offered(fallback)


def _offered(names: Iterable[str]) -> list[str]:
    """The terminals worth naming: the grammar takes a `rollback` among the pipeline's
    items (where a stage may stand) only to say it belongs in a stage."""
    found = set(names)
    if "STAGE" in found:
        found.discard("ROLLBACK")
    return sorted(found)


def _open_braces(blanked: str, offset: int) -> int:
    """How many `{` are open just before `offset`."""
    depth = 0
    for match in _BRACES.finditer(blanked, 0, offset):
        char = blanked[match.start()]
        if char == "{":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
    return depth


def _innermost_block(blanked: str, offset: int) -> str:
    """The name of the innermost block open just before `offset` (see `_block_name`)."""
    stack: list[int] = []
    for match in _BRACES.finditer(blanked, 0, offset):
        char = blanked[match.start()]
        if char == "{":
            stack.append(match.start())
        elif char == "}" and stack:
            stack.pop()
    return _block_name(blanked, stack[-1]) if stack else ""


def _unclosed_brace(blanked: str) -> int | None:
    """Offset of the `{` most likely left open, or None if every `{` is closed.

    The innermost open `{` at the end of the file is the candidate, unless a `}`
    sits less indented than the line of the `{` it closes: that `}` was meant
    for an outer block, so its `{` is the one left open.
    """
    stack: list[int] = []
    pairs: list[tuple[int, int]] = []
    for match in _BRACES.finditer(blanked):
        char = blanked[match.start()]
        if char == "{":
            stack.append(match.start())
        elif char == "}" and stack:
            pairs.append((stack.pop(), match.start()))
    if not stack:
        return None
    for opener, closer in pairs:  # in the order of the closers
        closer_indent = _indent_before(blanked, closer)
        if closer_indent is not None and closer_indent < _line_indent(blanked, opener):
            return opener
    return stack[-1]


def _line_indent(text: str, offset: int) -> int:
    start = text.rfind("\n", 0, offset) + 1
    line = text[start:offset].expandtabs(4)
    return len(line) - len(line.lstrip())


def _indent_before(text: str, offset: int) -> int | None:
    """Indentation of the line at `offset` if only whitespace precedes it there, else None."""
    start = text.rfind("\n", 0, offset) + 1
    before = text[start:offset]
    return len(before.expandtabs(4)) if not before.strip() else None


_HOOK_BLOCKS = {f"the '{word}' block" for word in ("rollback", "failure", "success", "complete")}
_BLOCKS = {"pipeline", "stage", "steps", "parallel", "fanout"} | {
    "rollback",
    "notify",
    "failure",
    "success",
    "complete",
}


def _block_name(blanked: str, brace: int) -> str:
    if blanked[:brace].rstrip().endswith(")"):  # `each(…) {`, the one block after a ')'
        return "the 'each' block"
    match = _WORD_BEFORE.search(blanked, max(0, brace - 4096), brace)
    if match and match.group(1) in _BLOCKS:
        return f"the '{match.group(1)}' block"
    if match and match.group(1) == "environment":
        return "the 'environment' block"
    return "the step's block"
