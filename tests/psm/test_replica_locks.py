"""`Store.exclusive`: work that replicas must not do at once (a repository's pushes, the
janitor's sweep) is held by one of them at a time, and let go when it dies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from otto.psm import open_store
from serverkit import wait_for

HOLD = """
import sys, time
from otto.psm import open_store
store = open_store(sys.argv[1])
with store.exclusive("janitor") as mine:
    print(mine, flush=True)
    time.sleep(60)
"""


def test_one_replica_at_a_time_holds_a_named_lock(postgres_dsn: str) -> None:
    first, second = open_store(postgres_dsn), open_store(postgres_dsn)
    try:
        with first.exclusive("pushes https://forge/repo.git") as held:
            assert held
            with second.exclusive("pushes https://forge/repo.git") as other:
                assert not other
            with first.exclusive("pushes https://forge/repo.git") as again:
                assert not again  # not twice in one process either
            with second.exclusive("pushes https://forge/other.git") as elsewhere:
                assert elsewhere  # another name is another lock
        with second.exclusive("pushes https://forge/repo.git") as now:
            assert now
    finally:
        first.close()
        second.close()


def test_a_replica_that_dies_lets_go(postgres_dsn: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, postgres_dsn], stdout=subprocess.PIPE, text=True
    )
    store = open_store(postgres_dsn)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "True"
        with store.exclusive("janitor") as mine:
            assert not mine
        holder.kill()
        holder.wait()

        def free() -> bool:
            with store.exclusive("janitor") as mine:
                return mine

        wait_for(free, 10, "the lock to go with its holder")
    finally:
        holder.kill()
        store.close()


def test_sqlite_has_one_process_and_locks_within_it(tmp_path: Path) -> None:
    store = open_store(f"{tmp_path}/otto.db")
    try:
        with store.exclusive("janitor") as held, store.exclusive("janitor") as other:
            assert (held, other) == (True, False)
        with store.exclusive("janitor") as again:
            assert again
    finally:
        store.close()
