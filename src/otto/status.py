"""Outcome statuses of steps, contexts, batches and pipelines.

One published order, the worst wins when statuses combine:
Success < Unstable < Aborted < Failed < Error.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Status(StrEnum):
    SUCCESS = "Success"
    UNSTABLE = "Unstable"
    ABORTED = "Aborted"
    FAILED = "Failed"
    ERROR = "Error"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    @property
    def is_failure(self) -> bool:
        """Worse than Unstable: stops a Linear batch, aborts a Fanout one, ends the run."""
        return self.rank > Status.UNSTABLE.rank

    @property
    def exit_code(self) -> int:
        """The exit code of `otto run` / `otto agent` for this status."""
        return _EXIT_CODES[self]

    @classmethod
    def from_exit_code(cls, code: int) -> Status:
        """A step's exit code: 0 Success, anything else Failed (real tools exit 2 or 3 on
        plain errors). A step says Unstable explicitly (`$OTTO_STATUS`, the control
        socket); Aborted only ever comes from an abort."""
        return cls.SUCCESS if code == 0 else cls.FAILED

    @classmethod
    def parse(cls, text: str) -> Status:
        """A status from its name, case-insensitively; ValueError names the choices."""
        for status in cls:
            if status.value.lower() == text.strip().lower():
                return status
        raise ValueError(f"unknown status {text!r}; one of: {', '.join(s.value for s in cls)}")


_ORDER = (Status.SUCCESS, Status.UNSTABLE, Status.ABORTED, Status.FAILED, Status.ERROR)
_EXIT_CODES = {
    Status.SUCCESS: 0,
    Status.FAILED: 1,
    Status.ABORTED: 2,
    Status.UNSTABLE: 3,
    Status.ERROR: 4,
}


def worst(statuses: Iterable[Status], default: Status = Status.SUCCESS) -> Status:
    """The worst of `statuses` in the published order (`default` when there are none)."""
    return max(statuses, key=lambda s: s.rank, default=default)
