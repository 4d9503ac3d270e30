"""Key rules, shared by every backend so a key means the same thing everywhere.

A key is a relative, `/`-separated path of non-empty segments: no leading or trailing
`/`, no `.` or `..` segment, no backslash, no control character (C0, DEL, C1), no
percent-escape (`%2e`, `%2F`, ...: the HTTP layer decodes a path exactly once, so an
escape still present after that is a double-encoding trick), and no segment starting
with `.otto` (reserved for the backends' own temp, metadata and chunk files). A key is
at most 1024 bytes of UTF-8 and each segment at most 240 bytes (the filesystem limit
of 255, less room for the backends' side files).

It also names the logs every part reads and writes: an agent writes
`<pipeline>/<context>/context.log` and one `<pipeline>/<context>/<step>.log` per step;
the dashboard and the CLI read them.
"""

from __future__ import annotations

import re

from otto.objectstore.errors import InvalidKey

MAX_KEY_BYTES = 1024
MAX_SEGMENT_BYTES = 240
RESERVED_PREFIX = ".otto"

_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\\]")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidKey(f"{what} must be a string, not {type(value).__name__}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey(f"{what} {value!r} is not valid UTF-8") from None
    if size > MAX_KEY_BYTES:
        raise InvalidKey(f"{what} is {size} bytes long; the limit is {MAX_KEY_BYTES}")
    bad = _FORBIDDEN_CHARS.search(value)
    if bad:
        name = "a backslash" if bad.group() == "\\" else f"control character {bad.group()!r}"
        raise InvalidKey(f"{what} {value!r} contains {name}")
    if _PERCENT_ESCAPE.search(value):
        raise InvalidKey(f"{what} {value!r} contains a percent-escape (encoded twice?)")
    if value.startswith("/"):
        raise InvalidKey(f"{what} {value!r} is absolute; keys are relative")
    return value


def _check_segment(segment: str, value: str, what: str) -> None:
    if segment == "":
        raise InvalidKey(f"{what} {value!r} has an empty segment")
    if segment in (".", ".."):
        raise InvalidKey(f"{what} {value!r} has a {segment!r} segment")
    if segment.startswith(RESERVED_PREFIX):
        raise InvalidKey(
            f"{what} {value!r}: segments starting with {RESERVED_PREFIX!r} are reserved"
        )
    if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
        raise InvalidKey(f"{what} {value!r} has a segment longer than {MAX_SEGMENT_BYTES} bytes")


def validate_key(key: object) -> str:
    """Return `key` unchanged if it is a valid object key, else raise `InvalidKey`."""
    text = _check_text(key, "key")
    if text == "":
        raise InvalidKey("key is empty")
    for segment in text.split("/"):
        _check_segment(segment, text, "key")
    return text


def validate_prefix(prefix: object) -> str:
    """Validate a listing prefix: like a key, but may be empty, end with `/` or end mid-segment."""
    text = _check_text(prefix, "prefix")
    segments = text.split("/")
    for segment in segments[:-1]:
        _check_segment(segment, text, "prefix")
    if segments[-1].startswith(RESERVED_PREFIX):
        raise InvalidKey(
            f"prefix {text!r}: segments starting with {RESERVED_PREFIX!r} are reserved"
        )
    return text


def step_log_key(pipeline: str, context: str, step: str) -> str:
    return f"{pipeline}/{context}/{step}.log"


def context_log_key(pipeline: str, context: str) -> str:
    """The context's own log: validation errors, the checkout, the outcome."""
    return f"{pipeline}/{context}/context.log"


def is_valid_key(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return True


def cache_key(project: str, branch: str, name: str, content: str) -> str:
    """A saved cache (`otto.steps.caches`); a branch's `/` becomes `~`, which no git ref
    holds, so `feature/x` stays one segment."""
    return f"caches/{project}/{branch.replace('/', '~')}/{name}/{content}"


def cache_used_key(key: str) -> str:
    """Touched on each restore of the cache at `key`: when it was last used."""
    return f"{key}.used"
