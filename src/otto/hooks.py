"""How hook contexts read to people, on the dashboard and in `otto show`: what each reacts
to (`rollback of Deploy`, `on failure of the run`, `when Deploy completes`) and, of one
that was not triggered, why (`Deploy succeeded`). They read a context's `hook` as
`GET /v1/pipelines/{uuid}` gives it: `on`, `of`, `of_name`, `outcome`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

AFTER_THE_RUN = "After the run"  # the heading over the hook batches
_THE_RUN = "the run"
_CAME_TO = {
    "Success": "succeeded",
    "Unstable": "was unstable",
    "Aborted": "was aborted",
    "Failed": "failed",
    "Error": "ended in error",
}


def _subject(hook: Mapping[str, Any]) -> str:
    if hook.get("of") is None:
        return _THE_RUN
    return str(hook.get("of_name") or "its stage")


def reacts_to(hook: Mapping[str, Any]) -> str:
    """`rollback of Deploy`, `on failure of the run`, `on success of Deploy`, `when the
    run completes`."""
    on, subject = hook.get("on"), _subject(hook)
    if on == "rollback":
        return f"rollback of {subject}"
    if on == "complete":
        return f"when {subject} completes"
    return f"on {on} of {subject}"


def why_not_triggered(hook: Mapping[str, Any]) -> str:
    """`Deploy succeeded`, `The run failed`, `Deploy did not run`: the outcome a hook
    that was not triggered saw."""
    subject = _subject(hook)
    subject = subject[0].upper() + subject[1:]
    outcome = hook.get("outcome")
    return f"{subject} {_CAME_TO.get(outcome or '', 'did not run')}"
