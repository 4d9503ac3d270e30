"""A full disk under the filesystem store: a refused append keeps nothing of
its bytes, raises `StoreFull` (over HTTP: a 507 `disk_full`, raised again as `StoreFull`),
and the same append at the same offset succeeds once space is freed — not an
`offset_mismatch` forever. A real tmpfs of 2 MB, mounted by the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from diskkit import fill, small_tmpfs
from otto.objectstore import FilesystemStore, HttpObjectStore, ObjectStore, StoreFull

KEY = "p/c/step.log"
BIG = b"y" * (256 * 1024)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "disk") as path:
        yield path


@pytest.fixture(params=["fs", "http"])
def full_store(request: pytest.FixtureRequest, disk: Path) -> Iterator[ObjectStore]:
    store = FilesystemStore(disk / "objects", fsync=False)
    if request.param == "fs":
        yield store
        return
    server = request.getfixturevalue("http_server")
    server.serve(store)
    client = HttpObjectStore(server.url)
    try:
        yield client
    finally:
        client.close()


def test_a_refused_append_leaves_nothing_and_a_retry_resumes(
    full_store: ObjectStore, disk: Path
) -> None:
    assert full_store.append(KEY, 0, b"first\n") == 6
    filler = fill(disk, leave=64 * 1024)  # room for part of the next append, not all
    with pytest.raises(StoreFull) as refused:
        full_store.append(KEY, 6, BIG)
    assert refused.value.code == "disk_full"
    assert full_store.head(KEY).size == 6  # no partial bytes
    with pytest.raises(StoreFull):  # while the disk is full, the retry is refused alike
        full_store.append(KEY, 6, BIG)
    filler.unlink()
    assert full_store.append(KEY, 6, BIG) == 6 + len(BIG)  # not offset_mismatch
    assert full_store.get(KEY) == b"first\n" + BIG


def test_a_refused_put_keeps_the_old_object(full_store: ObjectStore, disk: Path) -> None:
    full_store.put("a/artifact", b"old")
    filler = fill(disk, leave=16 * 1024)
    with pytest.raises(StoreFull):
        full_store.put("a/artifact", BIG)
    assert full_store.get("a/artifact") == b"old"
    assert not [p for p in (disk / "objects" / "a").iterdir() if p.name.startswith(".otto-tmp")]
    filler.unlink()
    full_store.put("a/artifact", BIG)
    assert full_store.get("a/artifact") == BIG
