"""A small filesystem of its own for disk-full tests: a tmpfs mounted by the test (as
root), unmounted after. Where mounting is impossible the test skips, saying why; under
OTTO_REQUIRE_ISOLATION=1 (set by .ci/run) that is a failure, as in `isolationkit`."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from isolationkit import _unavailable


@contextmanager
def small_tmpfs(path: Path, size: str = "2m") -> Iterator[Path]:
    """`path` (made if missing) as a tmpfs of `size`, for the duration."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        _unavailable("mounting a small tmpfs for the disk-full tests needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        _unavailable(f"cannot mount a tmpfs for the disk-full tests: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path, leave: int = 0) -> Path:
    """Fill the filesystem of `path` up to `leave` free bytes with a file; returns it
    (remove it to free the space)."""
    filler = path / "filler"
    with open(filler, "wb") as f:
        block = b"\0" * 65536
        try:
            while True:
                st = os.statvfs(path)
                free = st.f_bavail * st.f_frsize - leave
                if free <= 0:
                    break
                f.write(block[: min(len(block), free)])
                f.flush()
        except OSError:
            pass
    return filler


def free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
