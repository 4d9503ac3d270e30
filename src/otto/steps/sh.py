"""`sh`: run a script with `/bin/sh -e`, printing it first (`+ make test`).

The original Otto's parameters: `returnStatus` (a non-zero exit does not fail the step,
its code is recorded), `returnStdout: 'NAME'` (the standard output, trimmed, becomes the
variable `NAME`: later steps and stages see `VAR_NAME`), `label` (printed instead of the
script, and shown instead of it in views), `encoding` (what the output is written in:
the log holds it as UTF-8).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from pathlib import Path

from pydantic import JsonValue

from otto.status import Status
from otto.steps.manifest import StepCallError
from otto.steps.runtime import StepFailure, StepOutcome, StepRuntime
from otto.steps.variables import MAX_VALUE_BYTES, VariablesError, check_variable, read_bounded

SHELL = "/bin/sh"
# The script's output to a file, its errors to the log: `$0` the script, `$1` the file.
TO_FILE = f'{SHELL} -e -c "$0" > "$1"'


def check(params: dict[str, JsonValue]) -> None:
    encoding = params.get("encoding")
    if encoding is not None:
        try:
            codecs.lookup(str(encoding))
        except LookupError:
            raise StepCallError(f"`sh` encoding `{encoding}` is not an encoding") from None
    name = params.get("returnStdout")
    if name is not None:
        try:
            check_variable(str(name), "")
        except VariablesError as exc:
            raise StepCallError(f"`sh` returnStdout: {exc}") from None


def run(rt: StepRuntime, params: dict[str, JsonValue]) -> StepOutcome:
    script = str(params["script"])
    label = params.get("label")
    shown = [str(label)] if label else [line for line in script.splitlines() if line.strip()]
    rt.write("".join(f"+ {line}\n" for line in shown).encode())
    encoding = str(params.get("encoding") or "utf-8")
    decoder = _decoder(encoding)
    output = None if decoder is None else lambda data: rt.write(decoder(data, False))
    variable = params.get("returnStdout")
    variables: dict[str, str] = {}
    if variable is None:
        code = rt.run([SHELL, "-e", "-c", script], output=output)
    else:
        stdout = rt.step_dir / "stdout"
        code = rt.run([SHELL, "-c", TO_FILE, script, str(stdout)], output=output)
        variables[str(variable)] = _captured(stdout, str(variable), encoding)
    if decoder is not None:
        rt.write(decoder(b"", True))
    if code != 0 and _flag(params.get("returnStatus")):
        rt.say(f"[otto] exit code {code} (returnStatus: the step does not fail)")
        return StepOutcome(code, status=Status.SUCCESS, variables=variables)
    return StepOutcome(code, variables=variables)


def _flag(value: JsonValue) -> bool:
    return value is True or value == "true"


def _decoder(encoding: str) -> Callable[[bytes, bool], bytes] | None:
    """Output in `encoding` as UTF-8, chunk by chunk (`final` with the last one); None
    when it is UTF-8 already: the log takes the bytes as they come."""
    if codecs.lookup(encoding).name == "utf-8":
        return None
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    return lambda data, final: decoder.decode(data, final).encode()


def _captured(path: Path, name: str, encoding: str) -> str:
    data = read_bounded(path, MAX_VALUE_BYTES)
    if data is None:
        limit = MAX_VALUE_BYTES // 1024
        raise StepFailure(f"returnStdout: the output for `{name}` is over {limit} KiB")
    return data.decode(encoding, errors="replace").strip()
