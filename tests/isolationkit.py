"""What the isolation tests need of this machine: bubblewrap, and Podman with the test
image (`tests/images/build-test-image.sh` builds it). Where they are missing the tests
skip, saying why; under OTTO_REQUIRE_ISOLATION=1 (set by .ci/run) that is a failure.

This machine's container quirks (hard limits below Podman's default ulimits) are
settings, given as in production: OTTO_CONTAINER_ARGS (and OTTO_CONTAINER_RUNTIME).
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import time

import pytest

from otto.isolation import bubblewrap

TEST_IMAGE = os.environ.get("OTTO_TEST_IMAGE", "localhost/otto-test:bookworm")


def _required() -> bool:
    return os.environ.get("OTTO_REQUIRE_ISOLATION", "").strip() not in ("", "0", "false", "no")


def _unavailable(problem: str) -> None:
    if _required():
        pytest.fail(f"OTTO_REQUIRE_ISOLATION is set but {problem}")
    pytest.skip(f"{problem} (set OTTO_REQUIRE_ISOLATION=1 to fail instead)")


@functools.cache
def _bubblewrap_problem() -> str | None:
    return bubblewrap.unavailable()


def need_bubblewrap() -> None:
    problem = _bubblewrap_problem()
    if problem:
        _unavailable(problem)


def container_engine_args() -> list[str]:
    runtime = os.environ.get("OTTO_CONTAINER_RUNTIME", "")
    return ["podman", *(["--runtime", runtime] if runtime else [])]


def container_run_args() -> list[str]:
    return shlex.split(os.environ.get("OTTO_CONTAINER_ARGS", ""))


@functools.cache
def _podman_problem() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman runc)"
    engine = container_engine_args()
    found = subprocess.run([*engine, "image", "exists", TEST_IMAGE], capture_output=True)
    if found.returncode != 0:
        return f"the test image {TEST_IMAGE} is missing: run tests/images/build-test-image.sh"
    ran = subprocess.run(
        [*engine, "run", "--rm", *container_run_args(), TEST_IMAGE, "true"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if ran.returncode != 0:
        return (
            f"podman cannot run {TEST_IMAGE} here: {ran.stderr.strip()} "
            "(set OTTO_CONTAINER_ARGS, e.g. '--ulimit nofile=1024:1024 --ulimit nproc=4096:4096')"
        )
    return None


def need_podman() -> None:
    need_bubblewrap()  # a containerised context's git runs in the host sandbox
    problem = _podman_problem()
    if problem:
        _unavailable(problem)


def containers(label: str) -> list[dict[str, object]]:
    """The containers (running or not) carrying `label` (`key=value`)."""
    found = subprocess.run(
        [*container_engine_args(), "ps", "--all", "--format", "json", "--filter", f"label={label}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return list(json.loads(found.stdout or "[]"))


def assert_removed(label: str, seconds: float = 20.0) -> None:
    """No container with `label` is left: the engine removes a killed one (`--rm`) a
    moment after the context has ended."""
    deadline = time.monotonic() + seconds
    while found := containers(label):
        assert time.monotonic() < deadline, f"containers left behind: {found}"
        time.sleep(0.1)
