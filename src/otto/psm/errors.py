"""Why the PSM refuses a request; whatever it refuses, it changes nothing."""

from __future__ import annotations

from typing import Any


class NotFound(LookupError):
    """No such pipeline, context or step."""


class Conflict(Exception):
    """The request does not fit the current state; nothing was changed."""

    def __init__(self, message: str, current: str | None = None) -> None:
        super().__init__(message)
        self.current = current


class StaleLease(Conflict):
    """A report under a lease that is no longer the context's current one."""


class IllegalTransition(Conflict):
    """A move the transition table does not allow."""

    def __init__(self, entity: Any, ident: str, current: str, wanted: str) -> None:
        super().__init__(f"{entity} {ident} is {current}; it cannot become {wanted}", current)
        self.entity, self.ident, self.wanted = entity, ident, wanted
