"""Unpacking untrusted .tar.gz archives (artifacts, step libraries) safely.

Every member is checked before anything is written: no absolute names, no
`..`, only files, directories and links, links pointing inside the archive's
destination, no member reached through a symlink member. Extraction then
uses tarfile's `data` filter, which also refuses to write through symlinks
already in the destination that point out of it.
"""

from __future__ import annotations

import posixpath
import tarfile
from pathlib import Path
from typing import BinaryIO


class UnsafeArchive(ValueError):
    """An archive that would write outside its destination, or is not a tar.gz."""


def check_members(members: list[tarfile.TarInfo]) -> None:
    links: set[str] = set()
    seen: set[str] = set()
    for member in members:
        name = _normal(member.name)
        if name is None:
            raise UnsafeArchive(f"member `{member.name}` leaves the destination")
        parts = name.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in links:
                raise UnsafeArchive(f"member `{member.name}` lies below a symlink")
        if member.issym():
            if posixpath.isabs(member.linkname):
                raise UnsafeArchive(f"symlink `{member.name}` points to an absolute path")
            target = _normal(posixpath.join(posixpath.dirname(name), member.linkname))
            if target is None:
                raise UnsafeArchive(f"symlink `{member.name}` points out of the destination")
            links.add(name)
        elif member.islnk():
            target = _normal(member.linkname)
            if target is None or target not in seen:
                raise UnsafeArchive(f"hard link `{member.name}` points out of the archive")
        elif not (member.isfile() or member.isdir()):
            raise UnsafeArchive(f"member `{member.name}` is not a file, directory or link")
        seen.add(name)


def safe_extract(archive: BinaryIO | Path, dest: Path) -> list[str]:
    """Unpack a .tar.gz into `dest` (created if missing); the member names, or UnsafeArchive."""
    source = {"name": archive} if isinstance(archive, Path) else {"fileobj": archive}
    try:
        with tarfile.open(mode="r:gz", **source) as tar:  # type: ignore[call-overload]
            members = tar.getmembers()
            check_members(members)
            dest.mkdir(parents=True, exist_ok=True)
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UnsafeArchive(f"cannot unpack: {exc}") from None
    return [m.name for m in members]


def _normal(name: str) -> str | None:
    """A member name without `./` and trailing `/`; None when it is absolute or escapes."""
    if not name or "\0" in name or posixpath.isabs(name) or name.startswith("\\"):
        return None
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../"):
        return None
    return normal
