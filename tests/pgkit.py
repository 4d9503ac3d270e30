"""A throw-away PostgreSQL cluster for tests and benchmarks (no Otto imports).

    from pgkit import throwaway_postgres       # tests/ on sys.path
    with throwaway_postgres() as dsn:          # postgresql://postgres@127.0.0.1:PORT/postgres
        ...

The cluster lives in a temporary directory: `initdb --auth=trust`, then
`postgres` on a free loopback port with fsync on; on exit it is stopped
(SIGINT: fast shutdown) and the directory removed. Running as root, the
server runs as the `postgres` system user (initdb and postgres refuse root).
`PostgresUnavailable` is raised when the server binaries cannot be found.
On Linux the server also shuts down when the thread that started it ends
(PR_SET_PDEATHSIG), so start it from a thread that outlives its use (the
main thread, as pytest's session fixtures and the benchmarks do).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from portkit import free_port

__all__ = [
    "Cluster",
    "PostgresUnavailable",
    "find_bindir",
    "throwaway_cluster",
    "throwaway_postgres",
]

STARTUP_TIMEOUT = 60.0


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries on this machine (or they could not start)."""


def find_bindir() -> Path:
    """Where `initdb` and `postgres` are: $OTTO_PG_BINDIR (only there, when set), else
    Debian's layout (15 first, then the newest) or $PATH."""
    candidates: list[str] = []
    if os.environ.get("OTTO_PG_BINDIR"):
        candidates.append(os.environ["OTTO_PG_BINDIR"])
    else:
        candidates.append("/usr/lib/postgresql/15/bin")
        candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(str(Path(on_path).parent))
    for candidate in candidates:
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "postgres").is_file():
            return path
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, postgres) not found in "
        f"{', '.join(dict.fromkeys(candidates))}; install postgresql-15 or set OTTO_PG_BINDIR"
    )


@dataclass
class Cluster:
    host: str
    port: int
    datadir: Path
    process: subprocess.Popen[bytes]
    user: str = "postgres"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"


def _as_server_user() -> dict[str, object]:
    """Popen arguments that run a child as `postgres` when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("running as root and there is no `postgres` user") from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _die_with_parent() -> Callable[[], None] | None:
    """For the server process (Linux): a fast shutdown when the process that started it
    dies, so a test run killed outright leaves no server behind. (Loaded here: the child,
    no longer root, may not be able to import anything.)"""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, int(signal.SIGINT))  # PR_SET_PDEATHSIG


def _wait_ready(cluster: Cluster, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cluster.process.poll() is not None:
            raise PostgresUnavailable(
                f"postgres exited with {cluster.process.returncode}:\n{log.read_text()[-2000:]}"
            )
        try:
            with socket.create_connection((cluster.host, cluster.port), timeout=0.5):
                pass
        except OSError:
            time.sleep(0.05)
            continue
        # Accepting TCP is not yet accepting queries: ask the server itself.
        isready = Path(find_bindir(), "pg_isready")
        if not isready.is_file():
            return
        ok = subprocess.run(
            [str(isready), "-q", "-h", cluster.host, "-p", str(cluster.port), "-U", cluster.user],
            check=False,
        )
        if ok.returncode == 0:
            return
        time.sleep(0.05)
    raise PostgresUnavailable(
        f"postgres did not become ready in {timeout:.0f}s:\n{log.read_text()}"
    )


@contextlib.contextmanager
def throwaway_cluster(*settings: str, fsync: bool = True) -> Iterator[Cluster]:
    """Start a fresh cluster; yield it; stop it and delete every file of it.

    `settings` are extra `name=value` server settings (`-c`).
    """
    bindir = find_bindir()
    run_as = _as_server_user()
    top = Path(tempfile.mkdtemp(prefix="otto-pg-"))
    try:
        if run_as:
            os.chown(top, run_as["user"], run_as["group"])  # type: ignore[arg-type]
        datadir, log = top / "data", top / "server.log"
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
        init = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(datadir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            cwd=top,
            env=env,
            capture_output=True,
            check=False,
            **run_as,  # type: ignore[arg-type]
        )
        if init.returncode != 0:
            raise PostgresUnavailable(
                f"initdb failed:\n{init.stdout.decode()}{init.stderr.decode()}"
            )
        port = free_port()
        command = [
            str(bindir / "postgres"),
            "-D",
            str(datadir),
            "-p",
            str(port),
            "-k",
            str(top),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"fsync={'on' if fsync else 'off'}",
            "-c",
            "max_connections=200",
        ]
        for setting in settings:
            command += ["-c", setting]
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command,
                cwd=top,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the test run does not reach it first
                preexec_fn=_die_with_parent(),
                **run_as,  # type: ignore[arg-type]
            )
        cluster = Cluster("127.0.0.1", port, datadir, process)
        try:
            _wait_ready(cluster, log, STARTUP_TIMEOUT)
            yield cluster
        finally:
            _stop(process)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # fast shutdown: roll back sessions, checkpoint, exit
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGQUIT)  # immediate shutdown
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def throwaway_postgres(*settings: str, fsync: bool = True, dbname: str = "otto") -> Iterator[str]:
    """A DSN of a fresh, empty database `dbname` on a throw-away cluster."""
    with throwaway_cluster(*settings, fsync=fsync) as cluster:
        create_database(cluster.dsn(), dbname)
        yield cluster.dsn(dbname)


def create_database(admin_dsn: str, name: str, template: str | None = None) -> None:
    """CREATE DATABASE through psycopg (imported lazily: this module needs none to load)."""
    import psycopg
    from psycopg import sql

    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(query)


def drop_database(admin_dsn: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


if __name__ == "__main__":  # a smoke test: python tests/pgkit.py
    with throwaway_postgres() as url:
        import psycopg

        with psycopg.connect(url) as c:
            print(url, c.execute("SELECT version()").fetchone())
