"""How long something took, written one way for the terminal and one for the dashboard."""

from __future__ import annotations

import pytest

from otto.duration import format_duration


@pytest.mark.parametrize(
    ("seconds", "terminal", "dashboard"),
    [
        (0.5, "0.5s", "500 ms"),
        (4.23, "4.2s", "4.2 s"),
        (12.4, "12s", "12.4 s"),
        (59.7, "60s", "59.7 s"),
        (185, "3m05s", "3 m 05 s"),
        (3725, "1h02m", "1 h 02 m"),
    ],
)
def test_durations_are_written_for_the_terminal_and_the_dashboard(
    seconds: float, terminal: str, dashboard: str
) -> None:
    assert format_duration(seconds) == terminal
    assert format_duration(seconds, spaced=True) == dashboard
