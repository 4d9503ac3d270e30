"""Agent overhead: what running a step through the agent costs over a bare spawn.

(a) a context of 200 `sh 'true'` steps against 200 bare
    `subprocess.run(['sh', '-c', 'true'])` in the same run. Target: <= 2x bare.
(b) a step printing 100 MB (`head -c 100M /dev/zero | base64`) against the same
    command redirected to a file. Target: <= 2x bare, with the stored log complete
    and byte-exact (size and sha256 checked).

The agent runs in-process (`run_agent`) with the filesystem object store and a
JSON-lines reporter, as `otto agent` does once started. Bare and agent runs are
interleaved and the best of --repeat is shown (other load hits both alike). Run
once with the store on disk and once on tmpfs: the filesystem store creates two
files per log (the log, and its metadata when sealed), which on a slow disk costs
more than the spawn itself.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from otto.agent import Invocation, JsonLinesReporter, run_agent
from otto.isolation import SandboxSpec
from otto.model import Context, Step, new_uuid
from otto.objectstore import open_store
from otto.objectstore.keys import step_log_key
from otto.status import Status

STEPS = 200
BIG = "head -c 100M /dev/zero | base64"


def invocation(root: Path, scripts: list[str]) -> Invocation:
    context = Context(properties={"name": "bench"})
    context.steps = [Step(context=context.uuid, symbol="sh", parameters=[s]) for s in scripts]
    return Invocation(
        pipeline=new_uuid(),
        context=context,
        object_store=str(root / "objects"),
        workspace_root=root / "ws",
        sandbox=SandboxSpec(kind="none"),  # the agent's own cost, as before isolation
    )


def run_context(inv: Invocation) -> float:
    reporter = JsonLinesReporter(io.StringIO(), inv.pipeline, inv.context.uuid)
    start = time.perf_counter()
    result = run_agent(inv, reporter)
    elapsed = time.perf_counter() - start
    if result.status is not Status.SUCCESS:
        raise SystemExit(f"bench context ended {result.status}: {result.reason}")
    return elapsed


def bench_spawns(root: Path, repeat: int) -> tuple[float, float]:
    def bare() -> float:
        start = time.perf_counter()
        for _ in range(STEPS):
            subprocess.run(["sh", "-c", "true"], check=True)
        return time.perf_counter() - start

    # Interleaved, best of each: other load on the machine hits both alike.
    bare_times, agent_times = [], []
    for _ in range(repeat):
        bare_times.append(bare())
        agent_times.append(run_context(invocation(root, ["true"] * STEPS)))
    return min(bare_times), min(agent_times)


def bench_output(root: Path, repeat: int) -> tuple[float, float, str]:
    out = root / "bare.out"

    def bare() -> float:
        start = time.perf_counter()
        subprocess.run(["sh", "-c", f"{BIG} > {out}"], check=True)
        return time.perf_counter() - start

    bare_times, agent_times = [], []
    verdict = ""
    for _ in range(repeat):
        bare_times.append(bare())
        inv = invocation(root, [BIG])
        agent_times.append(run_context(inv))
        verdict = verify(inv, out)
        out.unlink()
        shutil.rmtree(root / "ws")
    return min(bare_times), min(agent_times), verdict


def verify(inv: Invocation, bare_output: Path) -> str:
    """The stored log is the command line plus exactly what the bare run wrote."""
    expected = hashlib.sha256(f"+ {BIG}\n".encode())
    size = len(f"+ {BIG}\n")
    with open(bare_output, "rb") as f:
        while chunk := f.read(1 << 20):
            expected.update(chunk)
            size += len(chunk)
    store = open_store(inv.object_store)
    key = step_log_key(inv.pipeline, inv.context.uuid, inv.context.steps[0].uuid)
    info = store.head(key)
    stored = hashlib.sha256()
    with store.open(key) as stream:
        for chunk in stream:
            stored.update(chunk)
    ok = info.size == size and stored.hexdigest() == expected.hexdigest() == info.sha256
    verdict = f"{info.size} bytes, sha256 {'matches' if ok else 'DIFFERS'}"
    if not ok:
        raise SystemExit(f"stored log is not byte-exact: {verdict}, expected {size} bytes")
    store.delete(key)
    return verdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument(
        "--dir",
        action="append",
        help="where the object store and workspaces live (repeatable; default: the "
        "system temp dir, and /dev/shm when there is one)",
    )
    args = parser.parse_args()
    dirs = args.dir or [tempfile.gettempdir(), *(["/dev/shm"] if Path("/dev/shm").is_dir() else [])]
    for where in dirs:
        print(f"object store and workspaces in {where}:")
        with tempfile.TemporaryDirectory(prefix="otto-bench-agent-", dir=where) as tmp:
            root = Path(tmp)
            bare, agent = bench_spawns(root, args.repeat)
            ratio = agent / bare
            print(f"  (a) {STEPS} sh 'true' steps: agent {agent:.3f} s, bare {bare:.3f} s")
            print(
                f"      {agent / STEPS * 1000:.2f} ms/step vs {bare / STEPS * 1000:.2f} ms/spawn: "
                f"{ratio:.2f}x (target <= 2x) {'OK' if ratio <= 2 else 'MISSED'}"
            )
            bare, agent, verdict = bench_output(root, args.repeat)
            ratio = agent / bare
            print(f"  (b) 100 MB of output: agent {agent:.3f} s, bare {bare:.3f} s")
            verdict = f"{'OK' if ratio <= 2 else 'MISSED'}; log {verdict}"
            print(f"      {ratio:.2f}x (target <= 2x) {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
