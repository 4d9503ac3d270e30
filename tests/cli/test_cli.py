"""The `otto` command as a user runs it: a real process, its output and its exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "Ottofile"


def otto(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otto.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


def test_parse_prints_the_model_as_json_and_yaml() -> None:
    done = otto("parse", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    model = json.loads(done.stdout)
    assert [b["mode"] for b in model["batches"]] == ["Linear", "Parallel", "Linear"]
    as_yaml = otto("parse", "--format", "yaml", str(EXAMPLE))
    assert yaml.safe_load(as_yaml.stdout)["batches"][1]["contexts"][1]["properties"] == {
        "name": "Lint"
    }


def test_parse_reads_standard_input() -> None:
    done = otto("parse", "-", stdin="pipeline { steps { sh 'ls' } }")
    assert done.returncode == 0
    assert json.loads(done.stdout)["batches"][0]["contexts"][0]["steps"][0]["symbol"] == "sh"


def test_an_invalid_ottofile_exits_1_with_file_line_column(tmp_path: Path) -> None:
    bad = tmp_path / "Ottofile"
    bad.write_text("pipeline {\n    stage {\n        name = 'x'\n        steps { sh }\n    }\n}\n")
    for command in ("parse", "explain", "fmt"):
        done = otto(command, str(bad))
        assert done.returncode == 1
        first = done.stderr.splitlines()[0]
        assert first.startswith(f"{bad}:4:")
        assert "Traceback" not in done.stderr
        assert "^" in done.stderr


def test_explain_lists_what_will_run() -> None:
    done = otto("explain", str(EXAMPLE))
    assert done.returncode == 0, done.stderr
    assert "batch 2 (Parallel)" in done.stdout
    assert 'archive artifacts="build.log", name="build-log", followSymlinks=false' in done.stdout
    assert "env CFLAGS=-O2" in done.stdout


def test_explain_validates_steps_against_manifests(tmp_path: Path) -> None:
    bad = tmp_path / "Ottofile"
    bad.write_text(
        "pipeline {\n  steps {\n    shh 'make'\n    git url: 'u', brnch: 'b'\n"
        "    dir 'd' { archive name: 'x' }\n  }\n}\n"
    )
    done = otto("explain", str(bad))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f"{bad}:3:5: unknown step `shh` (did you mean `sh`?)")
    assert "known steps: archive, dir, echo, error, git, sh, unarchive" in lines[0]
    assert lines[1].startswith(f"{bad}:4:5: `git` has no parameter `brnch`")
    assert lines[2].startswith(f"{bad}:5:15: `archive` is missing required parameter `artifacts`")


def test_usage_errors_exit_64() -> None:
    assert otto().returncode in (0, 64)  # bare `otto` prints help
    assert otto("bogus").returncode == 64
    assert otto("parse").returncode == 64
    assert otto("parse", "--format", "xml", str(EXAMPLE)).returncode == 64
    missing = otto("parse", "/no/such/Ottofile")
    assert missing.returncode == 64 and "cannot read" in missing.stderr


def test_fmt_prints_and_writes_the_canonical_style(tmp_path: Path) -> None:
    messy = tmp_path / "Ottofile"
    messy.write_text("pipeline{stage{name='a' steps{sh 'x',sh 'y'}}}")
    shown = otto("fmt", str(messy))
    assert shown.returncode == 0
    assert shown.stdout.startswith("pipeline {\n")
    assert otto("fmt", "--write", str(messy)).returncode == 0
    assert messy.read_text() == shown.stdout
    assert otto("fmt", str(messy)).stdout == shown.stdout  # idempotent
