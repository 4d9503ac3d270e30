"""Unsandboxed execution only by name, and then on record; a machine that
cannot sandbox says so and runs nothing unsandboxed."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from e2e.e2ekit import contexts, submit, wait_complete
from isolationkit import need_bubblewrap
from otto.auction import Capabilities
from otto.auction.requirements import Requirements
from otto.config import ConfigError, load_settings
from otto.isolation.policy import IsolationPolicy
from serverkit import running_server

ONE_STEP = "pipeline { stage { name = 'one' steps { sh 'true' } } }"


def _isolation_of(client: httpx.Client, uuid: str, context: str) -> str | None:
    moves = client.get(f"/v1/pipelines/{uuid}/transitions").json()["transitions"]
    running = [t for t in moves if t["id"] == context and t["to"] == "Running"]
    return running[-1]["data"].get("isolation")


def test_the_run_page_says_how_each_context_was_isolated(tmp_path: Path) -> None:
    need_bubblewrap()
    for sandbox, shown in (("bubblewrap", "in bubblewrap"), ("none", "unsandboxed")):
        home = tmp_path / sandbox
        with running_server(home, OTTO_SANDBOX=sandbox) as srv, srv.client() as client:
            uuid = submit(client, ONE_STEP)
            run = wait_complete(client, uuid)
            ctx = contexts(run)["one"]
            assert run["status"] == "Success"
            assert _isolation_of(client, uuid, ctx["uuid"]) == sandbox
            page = client.get(f"/pipelines/{uuid}").text
            assert shown in page
            assert ("unsandboxed" in page) == (sandbox == "none")


def test_without_bubblewrap_nothing_runs_unsandboxed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # A PATH without bwrap (nor podman): as on a machine where neither is installed.
    with (
        running_server(home, PATH="/usr/local/bin", OTTO_SANDBOX="bubblewrap") as srv,
        srv.client() as client,
    ):
        uuid = submit(client, ONE_STEP)
        run = wait_complete(client, uuid)
        ctx = contexts(run)["one"]
        assert (run["status"], ctx["state"]) == ("Error", "Error")
        moves = client.get(f"/v1/pipelines/{uuid}/transitions").json()["transitions"]
        reason = next(t["reason"] for t in moves if t["id"] == ctx["uuid"] and t["to"] == "Error")
        assert reason.startswith("sandbox_unavailable: bubblewrap (bwrap) is not installed")
        assert "sandbox: none" in reason
    said = (tmp_path / f"server-{srv.url.rsplit(':', 1)[1]}.log").read_text()
    assert "sandbox_unavailable" in said  # at start, before any run


def test_only_orchestrators_offering_containers_take_a_stage_with_an_image() -> None:
    image = Requirements.of({"image": "python:3.12"})
    plain = Requirements.of({"name": "build"})
    host_only = Capabilities.of_this_machine()
    with_containers = Capabilities.of_this_machine(containers=True)
    assert not host_only.satisfy(image) and host_only.satisfy(plain)
    assert with_containers.satisfy(image) and with_containers.satisfy(plain)
    assert Capabilities.from_dict(with_containers.to_dict()) == with_containers
    assert Requirements.from_dict(image.to_dict()) == image


def test_isolation_settings_are_checked_where_they_are_given(tmp_path: Path) -> None:
    for env, named in (
        ({"OTTO_SANDBOX_BINDS": "/srv/ok, relative/path"}, "OTTO_SANDBOX_BINDS"),
        ({"OTTO_SANDBOX": "chroot"}, "OTTO_SANDBOX"),
        ({"OTTO_CONTAINERS": "lxc"}, "OTTO_CONTAINERS"),
    ):
        with pytest.raises(ConfigError, match=named):
            load_settings(env={**env, "OTTO_HOME": str(tmp_path)})


def test_agents_start_without_the_servers_secrets_which_are_masked_all_the_same() -> None:
    policy = IsolationPolicy(
        environ={
            "OTTO_TOKEN": "t0ken-1",
            "MYAPP_WEBHOOK_SECRET": "s3cret",
            "DEPLOY_KEY": "k3y-k3y",
            "HOOK_VALUE": "h00k-h00k",  # a project's variable, by a name that says nothing
            "AWS_SECRET_ACCESS_KEY": "aws-key",  # the object store's own: the agent needs it
            "OTTO_READ_TOKEN_REQUIRED": "1",  # a setting, not a secret
            "PATH": "/usr/bin",
            "NPM_REGISTRY": "https://npm.example",
        },
        passthrough=("NPM_REGISTRY", "MISSING"),
    ).withholding(["HOOK_VALUE"])
    assert policy.agent_environ() == {
        "AWS_SECRET_ACCESS_KEY": "aws-key",
        "PATH": "/usr/bin",
        "NPM_REGISTRY": "https://npm.example",
    }
    assert sorted(policy.secret_values()) == sorted(
        ["t0ken-1", "s3cret", "k3y-k3y", "h00k-h00k", "aws-key"]
    )
    assert policy.passthrough_values() == {"NPM_REGISTRY": "https://npm.example"}
