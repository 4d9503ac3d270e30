"""A run refused at creation (its Ottofile calls a step wrongly) says why in every command."""

from __future__ import annotations

from pathlib import Path

import pytest
from clientkit import otto

from otto.client import OttoClient
from serverkit import Server

BAD = "pipeline {\n  steps {\n    shh 'make'\n  }\n}\n"
WHERE = "ottofile:3:5: unknown step `shh` (did you mean `sh`?)"
SOURCE_AND_CARET = ["    shh 'make'", "    ^"]


@pytest.fixture(scope="module")
def rejected_run(server: Server) -> str:
    with OttoClient(server.url) as c:
        return c.create(ottofile=BAD, repo="cli/rejected", ref="main").uuid


def test_show_prints_why_with_the_line_and_a_caret(server: Server, rejected_run: str) -> None:
    done = otto("show", rejected_run[:8], server=server)
    assert done.returncode == 0, done.stderr  # shown in full, as any finished run
    lines = done.stdout.splitlines()
    assert f"Pipeline {rejected_run}  ◆ Error" in lines[0]
    start = lines.index("Rejected (config_error): nothing of it ran")
    assert lines[start + 1].startswith(WHERE)
    assert lines[start + 2 : start + 4] == SOURCE_AND_CARET
    assert not any(line.startswith("WHAT") for line in lines)  # no empty table


def test_logs_exit_65_saying_why_there_are_none(server: Server, rejected_run: str) -> None:
    done = otto("logs", rejected_run, server=server)
    assert done.returncode == 65
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0] == (
        f"otto: pipeline {rejected_run[:8]} never ran (config_error), so it has no logs:"
    )
    assert lines[1].startswith(WHERE)
    assert lines[2:] == SOURCE_AND_CARET


def test_ps_gives_the_reason_in_one_short_line(server: Server, rejected_run: str) -> None:
    done = otto("ps", "--repo", "cli/rejected", server=server)
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split()[-1] == "REASON"
    assert row.startswith(rejected_run[:8]) and "◆ Error" in row
    assert row.split("  ")[-1].startswith("ottofile:3:5: unknown step `shh`")
    assert row.endswith("…") and len(row.split("  ")[-1]) == 60


def test_run_on_a_server_prints_why_and_exits_4(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "Ottofile"
    path.write_text(BAD)
    done = otto("run", str(path), server=server)
    assert done.returncode == 4, done.stderr
    lines = done.stdout.splitlines()
    start = lines.index("Rejected (config_error): nothing of it ran")
    assert lines[start + 1].startswith(WHERE)
    assert lines[start + 2 : start + 4] == SOURCE_AND_CARET


def test_run_here_refuses_what_a_step_s_own_check_refuses(tmp_path: Path) -> None:
    path = tmp_path / "Ottofile"
    path.write_text("pipeline {\n  steps {\n    dir '/etc' { sh 'true' }\n  }\n}\n")
    done = otto("run", str(path))
    assert done.returncode == 1
    assert done.stderr.startswith(f"{path}:3:5: `dir` directory `/etc` must be relative")
    assert done.stdout == ""  # refused before any server started
