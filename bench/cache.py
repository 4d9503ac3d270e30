"""Caches: `cache-save` and `cache-restore` of a 200 MB tree of 20,000 files, against
`tar czf` and `tar xzf` of the same tree in the same run (the target: at most 1.3×).

The steps run in a real agent (in this process, as the agent tests run it, unsandboxed
so that only the cache's work is timed) against a filesystem object store; each step's
time is what its `step_started`/`step_finished` events say. The tree is half random
bytes, half text, in 10 kB files (a pip or npm cache's mix of packed wheels and
metadata). Printed: seconds and MB/s of each, and the ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "src"))

from agentkit import AgentHarness, Outcome, context, sh, spec  # noqa: E402

VARIABLES = {"OTTO_PROJECT": "bench", "OTTO_BRANCH": "main"}
TARGET = 1.3


def make_tree(root: Path, files: int, size: int) -> int:
    """`files` files of `size` bytes under `root/tree/dNNN/`; the total size."""
    text = (b"Name: package\nVersion: 1.0\nRequires-Dist: other (>=2)\n" * 200)[: size // 2]
    for i in range(files):
        folder = root / "tree" / f"d{i // 200:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:05d}.whl").write_bytes(os.urandom(size - len(text)) + text)
    return files * size


def step_seconds(outcome: Outcome, index: int) -> float:
    uuid = outcome.invocation.context.steps[index].uuid
    started = next(e for e in outcome.events if e["event"] == "step_started" and e["step"] == uuid)
    finished = outcome.finished()[uuid]
    took = datetime.fromisoformat(finished["at"]) - datetime.fromisoformat(started["at"])
    return took.total_seconds()


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--file-kb", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        total = make_tree(base / "source", args.files, args.file_kb * 1000)
        harness = AgentHarness(base / "agent")
        copy = sh(f"cp -a {base / 'source' / 'tree'} tree")
        saved = harness.run(
            context(copy, spec("cache-save", name="t", paths="tree")), variables=VARIABLES
        )
        restored = harness.run(context(spec("cache-restore", name="t")), variables=VARIABLES)
        assert saved.status == restored.status == "Success", saved.log(1) + restored.log(0)
        save, restore = step_seconds(saved, 1), step_seconds(restored, 0)
        archive = base / "tree.tgz"
        tar_c = timed(["tar", "czf", str(archive), "-C", str(base / "source"), "tree"])
        (base / "out").mkdir()
        tar_x = timed(["tar", "xzf", str(archive), "-C", str(base / "out")])
        shutil.rmtree(base / "out")
    mb = total / 1e6
    print(f"tree: {args.files} files, {mb:.0f} MB")
    print(f"cache-save    {save:6.2f} s ({mb / save:5.0f} MB/s)   tar czf {tar_c:6.2f} s")
    print(f"cache-restore {restore:6.2f} s ({mb / restore:5.0f} MB/s)   tar xzf {tar_x:6.2f} s")
    ratios = save / tar_c, restore / tar_x
    verdict = "met" if max(ratios) <= TARGET else "missed"
    print(f"ratio: save {ratios[0]:.2f}×, restore {ratios[1]:.2f}× (target ≤ {TARGET}×: {verdict})")


if __name__ == "__main__":
    main()
