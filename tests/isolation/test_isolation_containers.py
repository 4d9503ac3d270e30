"""A stage with an image runs in a real Podman container that its orchestrator
provisions and removes, whatever the outcome; no container outlives its context, not
even an orchestrator's crash. Built from `tests/images/build-test-image.sh`'s image."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentkit import AgentHarness, context, make_repo, sh, spec
from e2e.e2ekit import contexts, object_bytes, poll, step_log_key, submit, wait_complete
from isolation.test_isolation_agent import MANIFEST, SCRIPT
from isolationkit import (
    TEST_IMAGE,
    assert_removed,
    container_engine_args,
    container_run_args,
    containers,
    need_podman,
)
from otto.isolation import ContainerSpec, SandboxSpec
from otto.model import Checkout, Context
from otto.steps.library import library_key
from serverkit import Server, orchestrator, running_server
from steps.test_step_library import library

IN_CONTAINER = "test -f /run/.containerenv && ! test -e /usr/bin/bwrap"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    need_podman()
    home = tmp_path_factory.mktemp("otto") / "home"
    with running_server(
        home, OTTO_CONTAINERS="podman", OTTO_CONCURRENCY="4", OTTO_SANDBOX_BINDS=""
    ) as srv:
        yield srv


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def image_file(path: str) -> str:
    done = subprocess.run(
        [*container_engine_args(), "run", "--rm", *container_run_args(), TEST_IMAGE, "cat", path],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def step_log(client: httpx.Client, run: dict[str, Any], name: str, step: int = 0) -> str:
    return (object_bytes(client, step_log_key(run, contexts(run)[name], step)) or b"").decode()


def reason_of(client: httpx.Client, uuid: str, context: str) -> str:
    answer = client.get(f"/v1/pipelines/{uuid}/transitions").json()["transitions"]
    return next(t["reason"] for t in reversed(answer) if t["id"] == context and t["reason"])


def test_a_stage_runs_in_its_image_and_hands_an_artifact_to_a_sandboxed_stage(
    client: httpx.Client,
) -> None:
    uuid = submit(
        client,
        f"""
        pipeline {{
            stage {{
                name = 'in image'
                runtime {{ docker {{ image = '{TEST_IMAGE}' }} }}
                steps {{
                    sh '{IN_CONTAINER} && cat /etc/debian_version > version.txt && python3 -V'
                    archive artifacts: 'version.txt', name: 'version'
                }}
            }}
            stage {{
                name = 'on host'
                steps {{ unarchive name: 'version' sh 'cat version; test -e /usr/bin/bwrap' }}
            }}
        }}
        """,
    )
    run = wait_complete(client, uuid, 120)
    logs = [step_log(client, run, n, i) for n in ("in image", "on host") for i in (0, 1)]
    assert run["status"] == "Success", logs
    assert "Python 3" in step_log(client, run, "in image")
    assert image_file("/etc/debian_version") in step_log(client, run, "on host", 1)
    assert_removed(f"otto.pipeline={uuid}")


def test_a_missing_image_is_a_provisioning_error_with_podmans_message(
    client: httpx.Client,
) -> None:
    uuid = submit(
        client,
        "pipeline { stage { name = 'nowhere' image = 'localhost/otto-missing:nope' "
        "steps { sh 'true' } } }",
    )
    run = wait_complete(client, uuid, 120)
    ctx = contexts(run)["nowhere"]
    assert (run["status"], ctx["state"]) == ("Error", "Error")
    reason = reason_of(client, uuid, ctx["uuid"])
    assert reason.startswith("provision_failed: cannot start a container of localhost/otto-")
    said = reason.split(":nope: ", 1)[1]  # podman's own words follow
    assert said.startswith("Error: ") and "localhost/otto-missing:nope" in said, said
    assert_removed(f"otto.pipeline={uuid}")


def napping_in_a_container(client: httpx.Client) -> str:
    """A run whose one step sleeps in a container: its uuid, once the step runs."""
    uuid = submit(
        client,
        f"pipeline {{ stage {{ name = 'nap' image = '{TEST_IMAGE}' "
        "steps { sh 'sleep 120' } } }",
    )
    poll(client, uuid, lambda r: contexts(r)["nap"]["steps"][0]["state"] == "Running", 120)
    assert len(containers(f"otto.pipeline={uuid}")) == 1
    return uuid


def test_an_abort_mid_step_leaves_no_container(client: httpx.Client) -> None:
    uuid = napping_in_a_container(client)
    assert client.post(f"/v1/pipelines/{uuid}/abort", json={}).status_code == 202
    run = wait_complete(client, uuid, 60)
    assert contexts(run)["nap"]["state"] == "Aborted"
    assert_removed(f"otto.pipeline={uuid}")


def in_test_image(ctx: Context) -> dict[str, Any]:
    """An agent invocation's isolation for `ctx`: the test image, the host sandbox."""
    container = ContainerSpec(
        image=TEST_IMAGE,
        name=f"otto-test-{ctx.uuid}",
        labels={"otto.context": ctx.uuid},
        engine_args=container_engine_args()[1:],
        run_args=container_run_args(),
    )
    return {"container": container, "sandbox": SandboxSpec(kind="bubblewrap")}


def test_a_checkout_is_in_the_containers_workspace(tmp_path: Path) -> None:
    need_podman()
    repo = tmp_path / "repo"
    sha = make_repo(repo, {"README": "checked out\n"})
    harness = AgentHarness(tmp_path)
    ctx = context(sh(f"{IN_CONTAINER} && cat README && git --version"))
    outcome = harness.run(ctx, checkout=Checkout(url=str(repo), sha=sha), **in_test_image(ctx))
    assert outcome.status == "Success", outcome.context_log + outcome.log()
    assert "checked out" in outcome.log()
    assert_removed(f"otto.context={ctx.uuid}")


def _children(pid: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
            found.append(int(entry))
    return found


def test_a_container_ends_by_itself_when_its_agent_is_killed(tmp_path: Path) -> None:
    """kill -9 of the orchestrator, its zygote and its agents mid-step: nobody is left to
    stop the container, and it ends anyway (its lifeline's write end died with the agent),
    and the engine removes it."""
    need_podman()
    home = tmp_path / "home"
    with (
        running_server(home, OTTO_LOCAL_ORCHESTRATOR="0") as srv,
        srv.client() as client,
        orchestrator(srv.url, "boxes", tmp_path / "orch", extra=["--runtime", "podman"]) as orch,
    ):
        uuid = napping_in_a_container(client)
        for zygote in _children(orch.pid):  # one group: the zygote and its agents
            os.killpg(zygote, signal.SIGKILL)
        orch.kill()
        orch.wait()
        assert_removed(f"otto.pipeline={uuid}", seconds=60)


def test_an_orchestrator_removes_the_containers_it_left_behind_when_it_starts(
    tmp_path: Path,
) -> None:
    """What no lifeline ends (the engine crashed, a container made but never started):
    the orchestrator removes its own leftovers, and only its own, when it starts."""
    need_podman()
    root = tmp_path / "orch"
    ours, theirs = f"otto.owner={root / 'boxes'}", f"otto.owner={tmp_path / 'elsewhere'}"
    made = [
        subprocess.run(
            [*container_engine_args(), "create", "--label", label, TEST_IMAGE, "true"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for label in (ours, theirs)
    ]
    try:
        with (
            running_server(tmp_path / "home", OTTO_LOCAL_ORCHESTRATOR="0") as srv,
            orchestrator(srv.url, "boxes", root, extra=["--runtime", "podman"]),
        ):
            assert_removed(ours, seconds=60)
            assert len(containers(theirs)) == 1
    finally:
        # --ignore: ours is gone already (removed by the orchestrator).
        subprocess.run(
            [*container_engine_args(), "rm", "--force", "--ignore", *made], capture_output=True
        )


def test_a_timeout_in_a_container_fails_the_step_and_removes_the_container(
    client: httpx.Client,
) -> None:
    uuid = submit(
        client,
        f"""pipeline {{ stage {{ name = 'slow' image = '{TEST_IMAGE}' steps {{
            dir 'sub' {{ sh '{IN_CONTAINER} && test "$(pwd)" = "$OTTO_WORKSPACE/sub"' }}
            sh script: 'sleep 60', timeout: '1s'
        }} }} }}""",
    )
    run = wait_complete(client, uuid, 120)
    slow = contexts(run)["slow"]
    assert [s["state"] for s in slow["steps"]] == ["Success", "Failed"]
    assert reason_of(client, uuid, slow["steps"][1]["uuid"]) == "timeout"
    assert_removed(f"otto.pipeline={uuid}")


def test_a_stages_environment_reaches_the_container_not_the_engine(
    client: httpx.Client,
) -> None:
    uuid = submit(
        client,
        f"""pipeline {{ stage {{
            name = 'env'
            image = '{TEST_IMAGE}'
            environment {{ CONTAINER_HOST = 'unix:///nowhere.sock'  GREETING = 'a b=c' }}
            steps {{ sh 'echo "[$CONTAINER_HOST] [$GREETING]"; env' }}
        }} }}""",
    )
    run = wait_complete(client, uuid, 120)
    log = step_log(client, run, "env")
    assert run["status"] == "Success", log
    assert "[unix:///nowhere.sock] [a b=c]" in log
    assert "OTTO_TOKEN" not in log and "AWS_" not in log


def test_a_step_library_runs_in_the_container(tmp_path: Path) -> None:
    need_podman()
    harness = AgentHarness(tmp_path)
    harness.store.put(
        library_key("files", "1.0"),
        library({"manifest.yml": (MANIFEST, 0o644), "run.sh": (SCRIPT, 0o755)}),
    )
    ctx = context(spec("make_file"), sh(f"{IN_CONTAINER} && cat by-library.txt"))
    outcome = harness.run(
        ctx,
        libraries=[{"name": "files", "version": "1.0"}],
        **in_test_image(ctx),
    )
    assert outcome.status == "Success", outcome.context_log
    assert "library sees {" in outcome.log(0) and "made" in outcome.log(1)
    assert_removed(f"otto.context={ctx.uuid}")
