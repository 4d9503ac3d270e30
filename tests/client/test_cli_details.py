"""What the client commands say about a run: short refs, abort reasons, signals, plurals,
batch numbers, `retry --all`, `artifacts`, plain help, usage errors and interrupts."""

from __future__ import annotations

import importlib.metadata
import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from clientkit import otto, wait_complete, wait_step_running

from otto.client import OttoClient, render
from otto.client.terminal import Terminal
from otto.client.view import RunView, timestamp
from otto.parser import parse
from otto.psm import PipelineStateMachine
from serverkit import Server

ONE = "pipeline { stage { name = 'Only' steps { sh 'echo only' } } }"


def create(server: Server, **fields: object) -> str:
    """A run created over the API with any fields of `POST /v1/pipelines`."""
    with server.client() as http:
        answer = http.post("/v1/pipelines", json={"ottofile": ONE, **fields})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["uuid"])


def test_version_comes_from_the_package_metadata() -> None:
    expected = f"otto {importlib.metadata.version('otto-ci')}\n"
    for args in (["--version"], ["version"]):
        done = otto(*args)
        assert (done.returncode, done.stdout) == (0, expected), done.stderr


@pytest.mark.parametrize("command", ["run", "ps", "retry", "artifacts", "server", "events"])
def test_help_is_in_plain_words(command: str) -> None:
    done = otto(command, "--help")
    assert done.returncode == 0, done.stderr
    assert "<" not in done.stdout, done.stdout  # no <str>, <bool>, <int range>
    assert "--help" in done.stdout


def test_usage_errors_exit_64_and_say_why() -> None:
    done = otto("ps", "--server", "localhost:7670")
    assert done.returncode == 64
    assert done.stderr == (
        "otto: --server localhost:7670: a URL needs its scheme, e.g. http://localhost:7670\n"
    )
    assert otto("show", "abc", "--server", "ftp://host").returncode == 64
    assert otto("artifacts", "abc", "-o", "x").returncode == 64  # -o without --download
    assert otto("retry", "--bogus").returncode == 64


def test_ps_takes_branches_and_tags_by_their_short_names(server: Server) -> None:
    repo = f"cli/refs-{time.monotonic_ns()}"
    branch = create(server, repo=repo, ref="refs/heads/main")
    tag = create(server, repo=repo, ref="refs/tags/v1.0")
    other = create(server, repo=repo, ref="refs/heads/mainline")
    listed = otto("ps", "--repo", repo, server=server).stdout.splitlines()
    rows = {line.split()[0]: line for line in listed[1:]}
    assert "  main  " in rows[branch[:8]] and "refs/heads" not in rows[branch[:8]]
    assert "  tag v1.0  " in rows[tag[:8]]
    assert "  mainline  " in rows[other[:8]]

    def uuids(ref: str) -> list[str]:
        found = otto("ps", "--repo", repo, "--ref", ref, "--json", server=server)
        assert found.returncode == 0, found.stderr
        return [p["uuid"] for p in json.loads(found.stdout)["pipelines"]]

    assert uuids("main") == [branch]
    assert uuids("v1.0") == [tag]
    assert uuids("refs/heads/main") == [branch]


def test_show_says_why_a_run_was_aborted_how_its_step_ended_and_its_message(
    server: Server, client: OttoClient
) -> None:
    uuid = create(
        server, ottofile="pipeline { stage { name = 'Nap' steps { sh 'sleep 30' } } }",
        message="Fix the frobnicator",
    )  # fmt: skip
    wait_step_running(client, uuid)
    assert otto("abort", uuid, server=server).returncode == 0
    wait_complete(client, uuid)
    shown = otto("show", uuid, server=server)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "    Fix the frobnicator" in lines
    assert "aborted by user" in lines
    assert "1 batch, 1 context" in lines
    step = wait_complete(client, uuid)["batches"][0]["contexts"][0]["steps"][0]  # type: ignore[index]
    assert step["exit_code"] == -15  # the abort stopped its process with SIGTERM
    step_line = next(line for line in lines if "1. sh 'sleep 30'" in line)
    assert "Aborted" in step_line and "(killed by SIGTERM)" in step_line
    assert "exit -15" not in shown.stdout


def test_show_names_the_run_that_superseded_another(open_psm: Callable[..., object]) -> None:
    psm = open_psm()
    assert isinstance(psm, PipelineStateMachine)
    older = psm.create(parse(ONE)).uuid
    newer = psm.create(parse(ONE)).uuid
    psm.abort(older, actor="webhooks", reason="superseded", data={"superseded_by": newer})
    out = io.StringIO()
    render.show(Terminal.of(out), RunView.load(psm.get(older)))
    assert f"superseded by {newer[:8]}" in out.getvalue().splitlines()


def test_events_number_batches_from_1(server: Server, client: OttoClient) -> None:
    uuid = create(server)
    wait_complete(client, uuid)
    lines = otto("events", "--pipeline", uuid, server=server).stdout.splitlines()
    batches = [line for line in lines if " batch " in line]
    assert batches and all(line.split()[4] == "1" for line in batches), batches
    as_json = otto("events", "--pipeline", uuid, "--json", server=server).stdout
    ids = {e["id"] for e in map(json.loads, as_json.splitlines()) if e["entity"] == "batch"}
    assert ids == {"0"}  # the API keeps its index


def test_retry_all_runs_a_successful_run_again(server: Server, client: OttoClient) -> None:
    uuid = create(server)
    first = wait_complete(client, uuid)
    assert first["status"] == "Success"
    refused = otto("retry", uuid, server=server)
    assert refused.returncode == 65 and "nothing to retry" in refused.stderr
    time.sleep(1.1)  # the last attempt starts visibly later than the run was created
    done = otto("retry", "--all", uuid[:8], server=server)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"retrying pipeline {uuid} (1 context: Only)"
    again = wait_complete(client, uuid)
    context = again["batches"][0]["contexts"][0]  # type: ignore[index]
    assert (again["status"], context["attempt"]) == ("Success", 2)
    retried = [
        t for t in client.transitions(uuid) if t["entity"] == "pipeline" and t["from"] == "Complete"
    ]
    assert [t["reason"] for t in retried] == ["retry"]
    started, created = (timestamp(again[k]) for k in ("started_at", "created_at"))
    assert started and created and started - created > timedelta(seconds=1)
    assert abs(started - timestamp(retried[0]["at"])) < timedelta(seconds=0.5)
    view = RunView.load(client.pipeline(uuid))
    assert view.duration is not None and view.finished_at
    since_creation = (view.finished_at - created).total_seconds()
    assert view.duration < since_creation - 1.0  # not since its creation


def test_retry_all_is_an_api_parameter(server: Server) -> None:
    with server.client() as http:
        document = http.get("/openapi.json").json()
        uuid = create(server)
        bad = http.post(f"/v1/pipelines/{uuid}/retry?all=maybe")
    retry = document["paths"]["/v1/pipelines/{uuid}/retry"]["post"]
    assert {p["name"]: p["in"] for p in retry["parameters"]}["all"] == "query"
    assert "/v1/objects" in document["paths"]
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "all"


ARCHIVING = """pipeline { stage { name = 'Pack' steps {
    sh 'echo built > out.txt'
    archive artifacts: 'out.txt'
} } }"""


def test_artifacts_are_listed_and_downloaded(
    server: Server, client: OttoClient, tmp_path: Path
) -> None:
    uuid = create(server, ottofile=ARCHIVING)
    assert wait_complete(client, uuid)["status"] == "Success"
    listed = otto("artifacts", uuid[:8], server=server)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split() == ["out.txt", "6"]
    saved = tmp_path / "copy.txt"
    done = otto("artifacts", uuid, "--download", "out.txt", "-o", str(saved), server=server)
    assert done.returncode == 0, done.stderr
    assert saved.read_text() == "built\n"
    here = otto("artifacts", uuid, "--download", "out.txt", server=server, cwd=tmp_path)
    assert here.returncode == 0 and (tmp_path / "out.txt").read_text() == "built\n"
    out = otto("artifacts", uuid, "-d", "out.txt", "-o", "-", server=server)
    assert out.stdout == "built\n"
    missing = otto("artifacts", uuid, "--download", "nope", server=server)
    assert missing.returncode == 65 and "out.txt" in missing.stderr
    with server.client() as http:
        served = http.get(f"/v1/objects/{uuid}/artifacts/out.txt")
    assert 'filename="out.txt"' in served.headers["content-disposition"]


def test_ctrl_c_aborts_a_run_started_with_sigint_ignored(server: Server, tmp_path: Path) -> None:
    """A background job (`make test &`, nohup) starts with SIGINT ignored: still, it aborts."""
    pid_file = tmp_path / "step.pid"
    path = tmp_path / "Ottofile"
    path.write_text(f"pipeline {{ stage {{ name = 'Nap' steps {{ sh 'echo $$ > {pid_file}; "
                    "sleep 30' } } }")  # fmt: skip
    run = subprocess.Popen(
        [sys.executable, "-m", "otto.cli", "run", str(path), "--server", server.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 2, out + err
    assert "interrupted: aborting the run" in out
    header = next(line for line in out.splitlines() if line.startswith("otto: pipeline "))
    uuid = header.split()[2].rstrip(":")
    with OttoClient(server.url) as client:
        assert client.pipeline(uuid)["status"] == "Aborted"
