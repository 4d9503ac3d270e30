"""A real S3-compatible server for the tests: `moto_server` on a free loopback port.

Fixtures (registered by tests/conftest.py): `moto_endpoint` (one server per
session, stopped at the end) and `make_bucket` (a fresh bucket per call); outside
pytest (the benchmarks), `running_moto()` and `bucket_maker(endpoint)`.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from serverkit import free_port


def wait_until_up(url: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def running_moto() -> Iterator[str]:
    """A `moto_server` on a free loopback port (its URL), stopped on exit."""
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with running_moto() as url:
        yield url


# The keys the tests give moto (it takes any).
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def bucket_maker(endpoint: str) -> Callable[[], str]:
    """A function that creates a fresh bucket on `endpoint` and returns its name."""
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )

    def make() -> str:
        name = f"otto-{uuid.uuid4().hex[:20]}"
        client.create_bucket(Bucket=name)
        return name

    return make


@pytest.fixture
def make_bucket(moto_endpoint: str) -> Callable[[], str]:
    return bucket_maker(moto_endpoint)
