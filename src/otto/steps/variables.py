"""Captured variables: what a step records for later steps and stages (`VAR_<NAME>`).

A script appends them to the file named by `$OTTO_VARIABLES`, in GitHub Actions'
`$GITHUB_OUTPUT` format: `NAME=value` lines, and for a multi-line value

    NAME<<EOF
    first line
    second line
    EOF

(any delimiter word instead of `EOF`). Blank lines are ignored. Names are letters,
digits and `_`, not starting with a digit; a value holds at most `MAX_VALUE_BYTES`
(a larger one could not be passed to a process's environment).
"""

from __future__ import annotations

import re
from pathlib import Path

VARIABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
MAX_NAME_LENGTH = 200
MAX_VALUE_BYTES = 64 * 1024
MAX_FILE_BYTES = 1 << 20  # what one step may write to `$OTTO_VARIABLES`

_NAME = re.compile(VARIABLE_NAME)
_HEREDOC = re.compile(r"^([^=<]*)<<(.*)$")


class VariablesError(ValueError):
    """Variables that cannot be captured: the message says which line and why."""


def check_variable(name: str, value: str) -> None:
    """VariablesError unless `name` may name a variable and `value` fits."""
    if not _NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        raise VariablesError(
            f"`{name}` is not a variable name (letters, digits and _, not starting with a digit)"
        )
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise VariablesError(f"the value of `{name}` is over {MAX_VALUE_BYTES // 1024} KiB")


def parse_variables(text: str) -> dict[str, str]:
    """The variables of a `$OTTO_VARIABLES` file, the last of a name winning."""
    found: dict[str, str] = {}
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    index = 0
    while index < len(lines):
        number, line = index + 1, lines[index].removesuffix("\r")
        index += 1
        if not line.strip():
            continue
        heredoc = _HEREDOC.match(line)
        if heredoc is not None:
            name, delimiter = heredoc.group(1).strip(), heredoc.group(2).strip()
            end = _closing(lines, index, delimiter, number)
            value = "\n".join(line.removesuffix("\r") for line in lines[index:end])
            index = end + 1
        elif "=" in line:
            name, value = line.split("=", 1)
            name = name.strip()
        else:
            raise VariablesError(f"line {number}: expected NAME=value or NAME<<DELIMITER")
        try:
            check_variable(name, value)
        except VariablesError as exc:
            raise VariablesError(f"line {number}: {exc}") from None
        found[name] = value
    return found


def _closing(lines: list[str], start: int, delimiter: str, number: int) -> int:
    """The index of the line that ends a `NAME<<DELIMITER` value."""
    if not delimiter:
        raise VariablesError(f"line {number}: `<<` needs a delimiter word (NAME<<EOF)")
    for index in range(start, len(lines)):
        if lines[index].removesuffix("\r") == delimiter:
            return index
    raise VariablesError(f"line {number}: no line `{delimiter}` ends the value")


def read_bounded(path: Path, limit: int) -> bytes | None:
    """A file a step wrote (missing: empty, the step removed it); None when it holds more
    than `limit` bytes (only `limit + 1` of them are read)."""
    try:
        with open(path, "rb") as file:
            data = file.read(limit + 1)
    except FileNotFoundError:
        return b""
    return None if len(data) > limit else data
