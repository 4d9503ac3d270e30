"""Walking a key's directories under a root without ever following a symbolic link.

Every component is opened relative to its parent's file descriptor with `O_NOFOLLOW`,
so a symlink planted anywhere inside the store (pointing outside or not) stops the
walk with `InvalidKey`, and a rename of a directory mid-walk cannot redirect it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from otto.objectstore.errors import InvalidKey, KeyConflict, ObjectNotFound

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RETRIES = 5


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def refuse_symlink(dir_fd: int, name: str, key: str) -> os.stat_result | None:
    """lstat `name`; a symlink there is never followed, it is refused."""
    st = lstat_at(dir_fd, name)
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise InvalidKey(f"key {key!r} passes through a symbolic link; refused")
    return st


def _open_child(parent: int, segment: str, key: str, create: bool) -> int:
    for _ in range(_RETRIES):
        try:
            return os.open(segment, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise ObjectNotFound(f"no object {key!r}") from None
            # Missing, or removed by a concurrent delete's pruning: make it (again).
            with contextlib.suppress(FileExistsError):
                os.mkdir(segment, 0o755, dir_fd=parent)
        except OSError as error:
            if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            refuse_symlink(parent, segment, key)
            if create:
                raise KeyConflict(
                    f"cannot store {key!r}: {segment!r} on its path is an object"
                ) from None
            raise ObjectNotFound(f"no object {key!r}") from None
    raise KeyConflict(f"cannot store {key!r}: its directory keeps disappearing")


def open_dirs(root: Path, segments: list[str], key: str, create: bool) -> list[int]:
    """Open root and each directory of `segments` in turn; returns every fd (close them)."""
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    try:
        for segment in segments:
            fds.append(_open_child(fds[-1], segment, key, create))
    except BaseException:
        close_all(fds)
        raise
    return fds


def close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


@contextlib.contextmanager
def parent_dir(root: Path, key: str, create: bool = False) -> Iterator[tuple[int, str]]:
    """Yield (fd of the directory holding `key`, the key's last segment)."""
    *dirs, name = key.split("/")
    fds = open_dirs(root, dirs, key, create)
    try:
        yield fds[-1], name
    finally:
        close_all(fds)


def prune_empty_dirs(root: Path, key: str) -> None:
    """Remove the now-empty directories of `key`, deepest first (as S3 has no directories)."""
    dirs = key.split("/")[:-1]
    try:
        fds = open_dirs(root, dirs, key, create=False)
    except (ObjectNotFound, InvalidKey, KeyConflict):
        return
    try:
        for depth in range(len(dirs), 0, -1):
            try:
                os.rmdir(dirs[depth - 1], dir_fd=fds[depth - 1])
            except OSError:
                return
    finally:
        close_all(fds)


def walk_files(
    dir_fd: int, base: str, only: str = ""
) -> Iterator[tuple[str, str, os.stat_result, int]]:
    """Yield (key, name, lstat, parent fd) of every regular file under `dir_fd` whose
    name (at this level) starts with `only`. Symlinks, FIFOs, ... are skipped."""
    with os.scandir(dir_fd) as entries:
        items = sorted((e for e in entries if e.name.startswith(only)), key=lambda e: e.name)
    for entry in items:
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISREG(st.st_mode):
            yield base + entry.name, entry.name, st, dir_fd
        elif stat.S_ISDIR(st.st_mode):
            try:
                child = os.open(entry.name, DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue
            try:
                yield from walk_files(child, base + entry.name + "/")
            finally:
                os.close(child)
