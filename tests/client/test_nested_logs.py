"""The logs of steps inside a block (`dir '…' { … }`) are shown under their block's step,
in order: by `otto logs`, `otto logs --follow` and `otto run`'s failure tail."""

from __future__ import annotations

from pathlib import Path

import pytest
from clientkit import follow_gated_run, otto, wait_complete

from otto.client import OttoClient
from serverkit import Server

NESTED = """pipeline {
    stage { name = 'Pack' steps {
        sh 'echo top-level'
        dir 'dist' {
            sh 'echo first-inside'
            dir 'deeper' { sh 'echo deepest' }
            sh 'echo last-inside; exit 1'
            sh 'echo not-reached'
        }
        sh 'echo never'
    } }
}"""
# Each nested step's output arrives while its block still runs: the block's second step
# waits for a gate the test opens only once it has been shown the first step's output.
SLOW_BLOCK = """pipeline {
    stage { name = 'Slow' steps {
        dir 'd' { sh 'echo early'  sh 'until [ -e GATE ]; do sleep 0.05; done; echo late' }
    } }
}"""


@pytest.fixture(scope="module")
def nested_run(server: Server) -> str:
    with OttoClient(server.url) as c:
        uuid = c.create(ottofile=NESTED).uuid
        wait_complete(c, uuid)
    return uuid


def positions(text: str, *parts: str) -> list[int]:
    return [text.index(part) for part in parts]


def test_logs_show_a_blocks_steps_in_order_under_it(server: Server, nested_run: str) -> None:
    done = otto("logs", nested_run, server=server)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    order = positions(
        out,
        "==> Pack › step 1/3 · sh 'echo top-level'",
        "\ntop-level\n",
        "==> Pack › step 2/3 · dir 'dist' { … } · ✗ Failed (exit 1)",
        "+ cd dist\n",
        "==> Pack › step 2.1 · sh 'echo first-inside'\n",
        "\nfirst-inside\n",
        "==> Pack › step 2.2 · dir 'deeper' { … }\n",
        "+ cd dist/deeper\n",
        "==> Pack › step 2.2.1 · sh 'echo deepest'\n",
        "\ndeepest\n",
        "==> Pack › step 2.3 · sh 'echo last-inside; exit 1'\n",
        "\nlast-inside\n",
    )
    assert order == sorted(order)
    # What did not run is not shown.
    assert "step 2.4" not in out and "\nnot-reached" not in out and "\nnever" not in out


def test_logs_follow_streams_a_blocks_steps_as_they_run(
    server: Server, client: OttoClient, tmp_path: Path
) -> None:
    _, lines = follow_gated_run(server, client, SLOW_BLOCK, tmp_path / "gate", opens_on="early")
    order = [
        lines.index(line)
        for line in (
            "+ cd d",
            "==> Slow › step 1.1 · sh 'echo early'",
            "early",
            "(gate opened)",  # "early" was shown while the block ran, not once it had ended
            "late",
        )
    ]
    assert order == sorted(order), lines
    assert any(line.startswith("==> Slow › step 1.2 · sh 'until") for line in lines), lines
    assert any(line.startswith("✓ Success") for line in lines)


def test_run_shows_the_tail_of_the_block_step_that_failed(tmp_path: Path) -> None:
    path = tmp_path / "Ottofile"
    path.write_text(NESTED, encoding="utf-8")
    done = otto("run", str(path), cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    tail = out[out.index("==> Pack › step 2/3 · dir 'dist' { … }") :]
    order = positions(
        tail,
        "+ cd dist\n",
        "==> Pack › step 2.3 · sh 'echo last-inside; exit 1'\n",
        "\nlast-inside\n",
    )
    assert order == sorted(order)
    assert "step 2.1" not in tail  # the block's step that ended it, not every one
