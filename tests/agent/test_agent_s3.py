"""The agent against S3 (a real `moto_server` on 127.0.0.1): live logs appended in pieces
and sealed, artifacts between contexts, credentials in the store URL kept out of logs."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable

import pytest

from agentkit import AgentHarness, context, sh, spec
from otto.objectstore import open_store
from otto.objectstore.keys import step_log_key


@pytest.fixture
def s3_url(moto_endpoint: str, make_bucket: Callable[[], str]) -> str:
    return (
        f"s3://{make_bucket()}/otto?endpoint={moto_endpoint}&region=us-east-1"
        "&access_key=testing&secret_key=s3cr3t-k3y-value"
    )


def test_logs_and_artifacts_on_s3(harness: AgentHarness, s3_url: str) -> None:
    chatty = sh("for i in 1 2 3; do echo line $i; sleep 0.25; done; mkdir out; echo x > out/f")
    first = context(chatty, spec("archive", artifacts="out", name="out"))
    out = harness.run(first, object_store=s3_url)
    assert out.status == "Success", out.result.reason
    store = open_store(s3_url)
    key = step_log_key(harness.pipeline, first.uuid, first.steps[0].uuid)
    log = store.get(key)
    assert log.endswith(b"line 1\nline 2\nline 3\n")
    assert store.head(key).sha256 == hashlib.sha256(log).hexdigest()  # sealed

    second = harness.run(context(spec("unarchive", "out"), sh("cat out/f")), object_store=s3_url)
    assert second.status == "Success", second.result.reason
    ctx2 = second.invocation.context
    assert store.get(step_log_key(harness.pipeline, ctx2.uuid, ctx2.steps[1].uuid)) == (
        b"+ cat out/f\nx\n"
    )


def test_store_credentials_never_reach_a_log(harness: AgentHarness, s3_url: str) -> None:
    # A library step gets the store URL in its invocation file, and may print it.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text, mode in [
            ("manifest.yml", "symbol: leak\nentrypoint: run.sh\n", 0o644),
            ("run.sh", '#!/bin/sh\ncat "$1"\n', 0o755),
        ]:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(text), mode
            tar.addfile(info, io.BytesIO(text.encode()))
    store = open_store(s3_url)
    store.put("step-libraries/leak/1.tar.gz", buf.getvalue())
    ctx = context(spec("leak"))
    out = harness.run(ctx, object_store=s3_url, libraries=[{"name": "leak", "version": "1"}])
    assert out.status == "Success", out.result.reason
    log = store.get(step_log_key(harness.pipeline, ctx.uuid, ctx.steps[0].uuid))
    assert b"secret_key=****" in log
    assert b"s3cr3t-k3y-value" not in log
