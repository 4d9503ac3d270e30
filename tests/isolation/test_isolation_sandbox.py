"""A pipeline never touches the server's secrets or state. A real `otto server`
with secrets in its environment runs real steps under bubblewrap; only the HTTP API and
the files on disk are looked at."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from e2e.e2ekit import contexts, object_bytes, step_log_key, submit, wait_complete
from isolationkit import need_bubblewrap
from serverkit import Server, running_server, wait_for

TOKEN = "tok-3f9a1c7e5b2d"
WEBHOOK_SECRET = "hook-8d7c6b5a4f3e"
OBJECT_KEYS = "s3key-1a2b3c4d5e6f"  # a variable whose name says nothing of a secret…


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    need_bubblewrap()
    home = tmp_path_factory.mktemp("otto") / "home"
    with running_server(
        home,
        OTTO_TOKEN=TOKEN,
        MYAPP_WEBHOOK_SECRET=WEBHOOK_SECRET,
        BUILD_FLAVOUR="fast",
        PLAIN_SETTING=OBJECT_KEYS,
        OTTO_AGENT_ENV_PASSTHROUGH="BUILD_FLAVOUR",
        OTTO_SANDBOX="bubblewrap",
        OTTO_SANDBOX_BINDS="",  # not even the test tmp tree (tests/conftest.py)
    ) as srv:
        yield srv


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    ) as c:
        yield c


def run_one(client: httpx.Client, script: str) -> tuple[dict, str]:
    """Run a one-step pipeline to its end: (the run, the step's log)."""
    quoted = script.replace("'", "''")
    uuid = submit(client, f"pipeline {{ stage {{ name = 'probe' steps {{ sh '{quoted}' }} }} }}")
    run = wait_complete(client, uuid)
    context = contexts(run)["probe"]
    log = object_bytes(client, step_log_key(run, context)) or b""
    return run, log.decode()


def test_a_step_sees_only_what_its_run_declared(client: httpx.Client) -> None:
    run, log = run_one(client, "env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'")
    assert run["status"] == "Success", log
    assert TOKEN not in log and WEBHOOK_SECRET not in log and OBJECT_KEYS not in log
    assert "OTTO_TOKEN" not in log and "MYAPP_WEBHOOK_SECRET" not in log
    assert "PLAIN_SETTING" not in log  # nothing inherited, secret-looking or not
    assert "BUILD_FLAVOUR=fast" in log  # passed through by the operator, by name
    assert "CI=true" in log and "LANG=C.UTF-8" in log
    home = next(line for line in log.splitlines() if line.startswith("HOME="))
    assert home.endswith(".home") and "/workspaces/" in home


def test_a_secret_that_reaches_a_log_anyway_is_masked(client: httpx.Client) -> None:
    run, log = run_one(client, f"echo token {TOKEN}; echo hook {WEBHOOK_SECRET}")
    assert run["status"] == "Success"
    assert TOKEN not in log and WEBHOOK_SECRET not in log
    assert "token ****" in log and "hook ****" in log


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_step_cannot_reach_the_database_objects_or_other_workspaces(
    server: Server, client: httpx.Client
) -> None:
    first, _ = run_one(client, "echo mine > result.txt")
    other = server.home / "workspaces" / first["uuid"] / contexts(first)["probe"]["uuid"]
    other_file = other / "result.txt"
    objects = server.home / "objects"
    an_object = next(p for p in objects.rglob("*.log") if p.is_file())
    db = server.home / "otto.db"
    before = {p: _digest(p) for p in (other_file, an_object)}
    probes = {
        "read-db": f"cat {db}",
        "read-other": f"cat {other_file}",
        "list-objects": f"ls {objects}/*",
        "read-root": "ls /root/",
    }
    # Writes land, if anywhere, in the sandbox's own /tmp: the real files must not change.
    writes = [f"echo pwned >> {db}", f"echo pwned > {other_file}", f"echo pwned > {an_object}"]
    script = "\n".join(
        # printed upper-case, so the script's own echo (`+ …`) does not count
        f"{cmd} >/dev/null 2>&1 && echo reached-{name} | tr a-z A-Z || true"
        for name, cmd in probes.items()
    )
    script += f"\nls {server.home} | sed s/^/seen:/ | tr a-z A-Z"
    script += "".join(f"\n{cmd} 2>/dev/null || true" for cmd in writes)
    run, log = run_one(client, f"{script}\necho probed")
    assert run["status"] == "Success", log
    assert "probed" in log
    assert [line for line in log.splitlines() if line.startswith("REACHED")] == [], log
    # Of $OTTO_HOME, a step sees only the way down to its own workspace.
    seen = [line for line in log.splitlines() if line.startswith("SEEN:")]
    assert seen == ["SEEN:WORKSPACES"], log
    assert {p: _digest(p) for p in before} == before
    assert not db.read_bytes().endswith(b"pwned\n")


def test_the_run_says_how_its_steps_were_isolated(client: httpx.Client) -> None:
    run, _ = run_one(client, "true")
    key = f"{run['uuid']}/{contexts(run)['probe']['uuid']}/context.log"
    assert "sandbox: bubblewrap" in (object_bytes(client, key) or b"").decode()


def _unique_sleep() -> str:
    """A `sleep` argument no other process has: how a test finds it among the host's."""
    return f"{1000 + time.time_ns() % 1000}.{time.time_ns() % 10**9}"


def _processes_with(marker: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline.split(b"\0"):
            found.append(pid)
    return found


def test_a_detached_process_does_not_outlive_its_sandboxed_step(client: httpx.Client) -> None:
    marker = _unique_sleep()
    run, log = run_one(client, f"setsid sleep {marker} & sleep 0.2; echo left")
    assert run["status"] == "Success", log
    wait_for(lambda: not _processes_with(marker), 5, "the detached process to end")


def test_an_abort_ends_the_whole_sandboxed_tree(client: httpx.Client) -> None:
    detached, child = _unique_sleep(), _unique_sleep()
    uuid = submit(
        client,
        f"pipeline {{ stage {{ name = 'tree' steps {{ sh 'setsid sleep {detached} & "
        f"sleep {child} & wait' }} }} }}",
    )
    wait_for(lambda: _processes_with(detached) and _processes_with(child), 30, "the tree")
    assert client.post(f"/v1/pipelines/{uuid}/abort", json={}).status_code == 202
    run = wait_complete(client, uuid)
    assert contexts(run)["tree"]["state"] == "Aborted"
    wait_for(lambda: not (_processes_with(detached) or _processes_with(child)), 10, "the tree")


def test_the_network_can_be_taken_away_and_trusted_paths_given(tmp_path: Path) -> None:
    need_bubblewrap()
    shared = tmp_path / "shared"
    shared.mkdir()
    with (
        running_server(
            tmp_path / "home",
            OTTO_SANDBOX_NETWORK="false",
            OTTO_SANDBOX_BINDS=str(shared),
        ) as srv,
        srv.client() as client,
    ):
        port = srv.url.rsplit(":", 1)[1]
        connect = f"import socket; socket.create_connection(('127.0.0.1', {port}), 2)"
        script = f'python3 -c "{connect}" 2>&1 | tail -1; echo written > {shared / "out.txt"}'
        run, log = run_one(client, script)
    assert run["status"] == "Success", log
    assert "Network is unreachable" in log or "Connection refused" in log, log
    assert (shared / "out.txt").read_text() == "written\n"


def test_a_stages_environment_never_reaches_the_sandbox_launcher(
    server: Server, client: httpx.Client, tmp_path: Path
) -> None:
    """A stage's PATH (or LD_PRELOAD, …) is for its steps: a `bwrap` of the workspace's own
    on that PATH must not be what starts the sandbox, outside it."""
    escaped = tmp_path / "escaped"
    uuid = submit(
        client,
        f"""pipeline {{ stage {{
            name = 'steer'
            environment {{ PATH = 'bin:/usr/bin:/bin' }}
            steps {{
                sh 'mkdir -p bin; printf "#!/bin/sh\\ntouch {escaped}\\n" > bin/bwrap'
                sh 'chmod +x bin/bwrap'
                sh 'grep CapEff /proc/self/status'
            }}
        }} }}""",
    )
    run = wait_complete(client, uuid)
    log = (object_bytes(client, step_log_key(run, contexts(run)["steer"], 2)) or b"").decode()
    assert run["status"] == "Success", log
    assert not escaped.exists()
    assert "CapEff:\t0000000000000000" in log  # root outside, no capability inside
