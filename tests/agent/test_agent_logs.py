"""Step output in the object store: live while the step runs, complete and exact after."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest

from agentkit import AgentHarness, context, sh, spec, wait_for
from otto.agent import logstream
from otto.agent.logstream import LogWriter
from otto.objectstore import FilesystemStore, ObjectNotFound
from otto.objectstore.keys import step_log_key


def test_the_log_is_readable_while_the_step_runs(harness: AgentHarness) -> None:
    step = sh("echo first; while [ ! -e go ]; do sleep 0.02; done; echo second")
    ctx = context(step)
    key = step_log_key(harness.pipeline, ctx.uuid, step["uuid"])
    outcome = []
    runner = threading.Thread(target=lambda: outcome.append(harness.run(ctx)))
    runner.start()
    try:

        def live() -> str:
            try:
                return harness.store.get(key).decode()
            except ObjectNotFound:
                return ""

        text = wait_for(lambda: "\nfirst\n" in live() and live(), seconds=10)
        assert "\nsecond\n" not in text
        assert text.startswith("+ echo first")
    finally:
        workspace = harness.root / "ws" / harness.pipeline / ctx.uuid
        (workspace / "go").touch()
        runner.join(30)
    out = outcome[0]
    assert out.status == "Success"
    assert out.log().endswith("first\nsecond\n")


def test_a_large_output_is_stored_byte_exact(harness: AgentHarness) -> None:
    out = harness.run(context(sh("seq 1 400000; seq 1 3 | tr -d '\\n'")))
    expected = "+ seq 1 400000; seq 1 3 | tr -d '\\n'\n"
    expected += "".join(f"{i}\n" for i in range(1, 400001)) + "123"
    key = step_log_key(harness.pipeline, out.invocation.context.uuid, out.result.steps[0].step)
    assert out.log() == expected
    info = harness.store.head(key)
    assert info.size == len(expected)
    assert info.sha256 == hashlib.sha256(expected.encode()).hexdigest()  # sealed


def test_binary_output_is_kept_as_is(harness: AgentHarness) -> None:
    out = harness.run(context(sh("printf 'a\\000b\\377c'")))
    key = step_log_key(harness.pipeline, out.invocation.context.uuid, out.result.steps[0].step)
    assert harness.store.get(key).endswith(b"a\x00b\xffc")


SECRET = "hunter2-Ab+/=&?x"


def test_secrets_are_masked_in_every_common_encoding(harness: AgentHarness) -> None:
    forms = {
        "raw": SECRET,
        "base64": base64.b64encode(SECRET.encode()).decode(),
        "base64 inside": base64.b64encode(f"user:{SECRET}".encode()).decode(),
        "urlsafe": base64.urlsafe_b64encode(SECRET.encode()).decode(),
        "url": quote(SECRET, safe=""),
        "json": json.dumps(f'say "{SECRET}"'),
    }
    script = "\n".join(f"printf '%s\\n' '{name}: {value}'" for name, value in forms.items())
    out = harness.run(context(sh(script)), secrets={"PASSWORD": SECRET})
    log = out.log()
    for name, value in forms.items():
        stripped = value.strip('"=')
        assert stripped not in log, name
    assert log.count("****") >= len(forms)


def test_a_secret_split_across_chunks_is_masked(harness: AgentHarness) -> None:
    script = "printf 'id=hunt'; sleep 0.5; printf 'er2-Ab'; sleep 0.3; printf '+/=&?x done\\n'"
    out = harness.run(context(sh(script)), secrets={"PASSWORD": SECRET})
    assert out.log().endswith("id=**** done\n")


def test_secret_from_the_environment_and_in_reasons(harness: AgentHarness) -> None:
    ctx = context(sh('echo "pw is $PASSWORD"'), spec("error", f"cannot log in with {SECRET}"))
    out = harness.run(ctx, secrets={"PASSWORD": SECRET})
    assert out.log(0).splitlines()[-1] == "pw is ****"
    assert SECRET not in out.log(1)
    assert out.result.reason == "cannot log in with ****"
    for event in out.events:
        assert SECRET not in json.dumps(event)
    assert SECRET not in out.context_log


def test_the_control_token_is_masked(harness: AgentHarness) -> None:
    out = harness.run(context(sh('echo "token=$OTTO_CONTROL_TOKEN"')))
    assert out.log().splitlines()[-1] == "token=****"


def test_log_writer_chunks_by_size_and_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]  # the writer's clock, so no preemption can make bytes due early
    monkeypatch.setattr(
        logstream, "time", SimpleNamespace(monotonic=lambda: now[0], sleep=time.sleep)
    )
    store = FilesystemStore(tmp_path / "objects", fsync=False)
    logs = LogWriter(store, flush_bytes=1000, flush_interval=0.1)
    log = logs.open("p/c/s.log")
    log.write(b"first\n")  # a log's first output goes out at once
    logs.tick()
    assert store.get("p/c/s.log") == b"first\n"
    log.write(b"x" * 10)
    now[0] += 0.09
    due = logs.tick()
    assert due == pytest.approx(1000.1) and store.head("p/c/s.log").size == 6  # not due yet
    now[0] = due
    assert logs.tick() is None
    assert store.head("p/c/s.log").size == 16
    log.write(b"y" * 2000)  # over flush_bytes: appended without waiting for a tick
    wait_for(lambda: store.head("p/c/s.log").size == 2016, seconds=5)
    assert log.close() is None
    assert logs.close() == []
    assert store.head("p/c/s.log").sha256 == hashlib.sha256(store.get("p/c/s.log")).hexdigest()


def test_a_log_appended_to_by_someone_else_breaks(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "objects", fsync=False)
    logs = LogWriter(store)
    log = logs.open("p/c/s.log")
    log.write(b"mine\n")
    logs.tick()
    store.append("p/c/s.log", 5, b"theirs\n")
    log.write(b"more\n")
    error = log.close()
    assert error is not None and "offset" in error
    assert logs.close() == [error]
    assert store.get("p/c/s.log") == b"mine\ntheirs\n"
