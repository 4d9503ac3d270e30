"""Running real agents in tests: contexts from compact step specs, invocations, a real
filesystem object store, reports read back from the JSON-lines file, git repositories
served by a real `git daemon` on 127.0.0.1, and a psutil-free "is it running?" check."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otto.agent import Invocation, JsonLinesReporter, run_agent
from otto.agent.runner import ContextResult
from otto.model import Context, Step
from otto.objectstore import FilesystemStore, ObjectNotFound
from otto.objectstore.keys import context_log_key, step_log_key
from portkit import free_port

PYTHON = sys.executable
CONTROL = f"{PYTHON} -m otto.agent.control"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Otto Test",
    "GIT_AUTHOR_EMAIL": "otto@example.invalid",
    "GIT_COMMITTER_NAME": "Otto Test",
    "GIT_COMMITTER_EMAIL": "otto@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def spec(symbol: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """A raw step: positional (`spec('sh', 'make')`) or keyword parameters."""
    assert not (args and kwargs), "positional or keyword parameters, not both"
    return {"symbol": symbol, "parameters": dict(kwargs) if kwargs else list(args)}


def sh(script: str, **kwargs: Any) -> dict[str, Any]:
    return spec("sh", script=script, **kwargs) if kwargs else spec("sh", script)


def context(*specs: dict[str, Any], environment: dict[str, str] | None = None) -> Context:
    """A context whose steps (and nested blocks) get fresh uuids and the context's uuid."""
    ctx_uuid = str(uuid.uuid4())

    def fill(raw: dict[str, Any]) -> dict[str, Any]:
        params = raw["parameters"]
        values = params.values() if isinstance(params, dict) else params
        for value in values:
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                for inner in value:
                    fill(inner)
        raw.setdefault("uuid", str(uuid.uuid4()))
        raw.setdefault("context", ctx_uuid)
        return raw

    steps = [Step.model_validate(fill(raw)) for raw in specs]
    return Context(
        uuid=ctx_uuid,
        properties={"name": "test"},
        environment=environment or {},
        steps=steps,
    )


@dataclass
class Outcome:
    result: ContextResult
    events: list[dict[str, Any]]
    invocation: Invocation
    store: FilesystemStore
    elapsed: float = 0.0

    @property
    def status(self) -> str:
        return self.result.status.value

    @property
    def workspace(self) -> Path:
        return self.invocation.workspace

    def log(self, step: int | str | dict[str, Any] = 0) -> str:
        """A step's stored log by index in the context, uuid, or raw spec."""
        if isinstance(step, int):
            step = self.invocation.context.steps[step].uuid
        elif isinstance(step, dict):
            step = str(step["uuid"])
        key = step_log_key(self.invocation.pipeline, self.invocation.context.uuid, step)
        return self.store.get(key).decode()

    def has_log(self, step: str) -> bool:
        try:
            self.store.head(
                step_log_key(self.invocation.pipeline, self.invocation.context.uuid, step)
            )
        except ObjectNotFound:
            return False
        return True

    @property
    def context_log(self) -> str:
        key = context_log_key(self.invocation.pipeline, self.invocation.context.uuid)
        return self.store.get(key).decode()

    def started(self) -> list[str]:
        return [e["step"] for e in self.events if e["event"] == "step_started"]

    def finished(self) -> dict[str, dict[str, Any]]:
        return {e["step"]: e for e in self.events if e["event"] == "step_finished"}


@dataclass
class AgentHarness:
    """Invocations rooted in one test's tmp dir, all sharing one object store."""

    root: Path
    pipeline: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        self.store = FilesystemStore(self.root / "objects", fsync=False)

    def invocation(self, ctx: Context, **overrides: Any) -> Invocation:
        data: dict[str, Any] = {
            "pipeline": self.pipeline,
            "context": ctx,
            "object_store": str(self.root / "objects"),
            "workspace_root": self.root / "ws",
            "cache_dir": self.root / "cache",
            "report": {"path": str(self.root / f"report-{ctx.uuid}.jsonl")},
            "kill_grace": 2.0,
            # The agent's own behaviour, unsandboxed by name; tests/isolation sandboxes it.
            "sandbox": {"kind": "none"},
        }
        data.update(overrides)
        return Invocation.model_validate(data)

    def run(self, ctx: Context, **overrides: Any) -> Outcome:
        """Run in this process, as `run_agent` is called."""
        inv = self.invocation(ctx, **overrides)
        assert inv.report.path is not None
        with open(inv.report.path, "a", encoding="utf-8") as stream:
            reporter = JsonLinesReporter(stream, inv.pipeline, ctx.uuid, inv.lease)
            start = time.monotonic()
            result = run_agent(inv, reporter)
            elapsed = time.monotonic() - start
        return Outcome(result, self.events(inv), inv, self.store, elapsed)

    def write(self, inv: Invocation) -> Path:
        path = self.root / f"invocation-{inv.context.uuid}.json"
        path.write_text(inv.model_dump_json())
        return path

    def spawn(self, inv: Invocation) -> subprocess.Popen[bytes]:
        """Start `python -m otto.agent --invocation FILE` as its own process."""
        return subprocess.Popen(
            [PYTHON, "-m", "otto.agent", "--invocation", str(self.write(inv))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def events(self, inv: Invocation) -> list[dict[str, Any]]:
        assert inv.report.path is not None
        path = Path(inv.report.path)
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped does not run)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] != b"Z"


def wait_for(predicate: Any, seconds: float = 10.0, every: float = 0.02) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {predicate}")
        time.sleep(every)


# -- git ----------------------------------------------------------------------------


def git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, **GIT_IDENTITY}
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def make_repo(path: Path, files: dict[str, str | bytes], branch: str = "main") -> str:
    """A repository at `path` with one commit holding `files`; that commit's sha."""
    git("init", "--quiet", "-b", branch, str(path))
    return commit(path, files, "initial")


def commit(repo: Path, files: dict[str, str | bytes], message: str) -> str:
    for name, content in files.items():
        target = repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        if name.endswith(".sh"):
            target.chmod(0o755)
    git("add", "--all", cwd=repo)
    git("commit", "--quiet", "-m", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


@contextmanager
def git_daemon(base: Path) -> Iterator[str]:
    """Serve every repository under `base` at git://127.0.0.1:PORT/<name>; stopped after."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--informative-errors",
            f"--base-path={base}",
            "--listen=127.0.0.1",
            f"--port={port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError("git daemon exited")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            except OSError:
                return False
            return True

        wait_for(up, seconds=10)
        yield f"git://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
