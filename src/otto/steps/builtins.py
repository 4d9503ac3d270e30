"""The standard steps that run inside the agent, by symbol.

Each has a manifest in `manifests/` (its parameters) and here a `run`
function, plus an optional `check` for what can be refused before the run
(called with the parameters bound by the manifest).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydantic import JsonValue

from otto.steps import artifacts, caches, directory, git, messages, sh
from otto.steps.runtime import StepOutcome, StepRuntime

Params = dict[str, JsonValue]


@dataclass(frozen=True)
class Builtin:
    run: Callable[[StepRuntime, Params], StepOutcome]
    check: Callable[[Params], None] | None = None


BUILTINS: dict[str, Builtin] = {
    "archive": Builtin(artifacts.archive, artifacts.check_archive),
    "cache-restore": Builtin(caches.restore, caches.check_restore),
    "cache-save": Builtin(caches.save, caches.check_save),
    "dir": Builtin(directory.run, directory.check),
    "echo": Builtin(messages.echo),
    "error": Builtin(messages.error),
    "git": Builtin(git.run, git.check),
    "sh": Builtin(sh.run, sh.check),
    "unarchive": Builtin(artifacts.unarchive, artifacts.check_unarchive),
}
