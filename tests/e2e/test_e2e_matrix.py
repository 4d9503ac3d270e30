"""A matrix end to end: an `each` block of 2×2 values runs as four contexts side by side,
each step seeing its own values, through a real `otto server` and real agents."""

from __future__ import annotations

from pathlib import Path

from serverkit import Server

from .e2ekit import contexts, object_bytes, step_log_key, submit, wait_complete, when


def matrix(here: Path) -> str:
    """Each step waits until all four have started: run one by one, they would time out."""
    wait = f"touch {here}/$OTTO_CONTEXT; until [ $(ls {here} | wc -l) -ge 4 ]; do sleep 0.05; done"
    return f"""
    pipeline {{
        each(os: ['linux', 'mac'], py: ['3.11', '3.12']) {{
            stage {{
                name = concat('test ', it.os, ' ', it.py)
                environment {{ LABEL = concat(it.os, '/', it.py) }}
                steps {{
                    sh concat('echo "arg=', it.os, '-', it.py, ' env=$OTTO_EACH_OS-$OTTO_EACH_PY ',
                              'label=$LABEL"; {wait}'), timeout: '60s'
                }}
            }}
        }}
    }}
    """


def test_a_two_by_two_matrix_runs_four_contexts_side_by_side(
    server: Server, tmp_path: Path
) -> None:
    here = tmp_path / "here"
    here.mkdir()
    with server.client() as c:
        uuid = submit(c, matrix(here))
        run = wait_complete(c, uuid)
        logs = {
            name: (object_bytes(c, step_log_key(run, context)) or b"").decode()
            for name, context in contexts(run).items()
        }

    assert (run["state"], run["status"]) == ("Complete", "Success")
    [batch] = run["batches"]
    assert batch["mode"] == "Parallel"
    found = contexts(run)
    assert sorted(found) == ["test linux 3.11", "test linux 3.12", "test mac 3.11", "test mac 3.12"]
    for name, log in logs.items():
        os_name, py = name.split()[1:]
        pair = f"{os_name}-{py}"
        assert f"arg={pair} env={pair} label={os_name}/{py}" in log, (name, log)
    starts = [when(x["started_at"]) for x in found.values()]
    ends = [when(x["finished_at"]) for x in found.values()]
    assert max(starts) < min(ends), (starts, ends)
