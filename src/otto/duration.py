"""Durations as people write them: `30s`, `10m`, `1h`, `1h30m`, `1.5m`, or seconds (`90`).

Stage and step timeouts (`timeout = '10m'`, `timeout: '30s'`) and duration settings
(`default_stage_timeout`) are read here, so all of them accept the same forms; and
`format_duration` writes how long something took, for the CLI and the dashboard, and
`duration_text` a duration as an Ottofile writes it.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile(rf"(?:({_NUMBER})h)?(?:({_NUMBER})m)?(?:({_NUMBER})s)?")
_SECONDS = re.compile(_NUMBER)
EXAMPLES = "30s, 10m, 1h or 1h30m"


class DurationError(ValueError):
    """Not a duration; `why` says what one looks like (without the value)."""

    def __init__(self, value: object, why: str) -> None:
        super().__init__(f"'{value}' is not a duration: {why}")
        self.why = why


def parse_duration(value: str | int | float) -> float:
    """Seconds, more than zero; DurationError saying what a duration looks like otherwise."""
    like = f"write e.g. {EXAMPLES}"
    if isinstance(value, bool):
        raise DurationError(value, like)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = value.strip()
        match = _DURATION.fullmatch(text)
        if _SECONDS.fullmatch(text):
            seconds = float(text)
        elif text and match:
            hours, minutes, secs = (float(part or 0) for part in match.groups())
            seconds = hours * 3600 + minutes * 60 + secs
        else:
            raise DurationError(value, like)
    if not math.isfinite(seconds):
        raise DurationError(value, like)
    if not seconds > 0:
        raise DurationError(value, "it must be more than zero")
    return seconds


def format_duration(seconds: float, spaced: bool = False) -> str:
    """`4.2s`, `12s`, `3m05s`, `1h02m`, as a terminal shows them; `spaced`: `850 ms`,
    `12.3 s`, `4 m 05 s`, `1 h 02 m`, as the dashboard does (tenths up to a minute)."""
    gap = " " if spaced else ""
    if spaced and seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < (60 if spaced else 10):
        return f"{seconds:.1f}{gap}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}{gap}m{gap}{secs:02d}{gap}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}{gap}h{gap}{minutes:02d}{gap}m"


def duration_text(seconds: float) -> str:
    """Seconds as the shortest text `parse_duration` reads back: `2h`, `1h30m`, `1m30s`,
    `1.5s`."""
    if seconds != int(seconds):
        return f"{Decimal(repr(seconds)):f}s"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    units = ((hours, "h"), (minutes, "m"), (secs, "s"))
    return "".join(f"{n}{unit}" for n, unit in units if n)
