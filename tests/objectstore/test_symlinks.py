"""Symlinks planted inside a filesystem store never let a read or write escape it
(the filesystem backend, and the HTTP API served over one)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from otto.objectstore import FilesystemStore, InvalidKey, KeyConflict, ObjectNotFound

from .conftest import Backend


@pytest.fixture
def planted(backend: Backend, tmp_path: Path) -> tuple[Backend, Path]:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"top secret")
    return backend, outside


@pytest.mark.parametrize("backend", ["fs", "http"], indirect=True)
def test_symlinked_directory(planted: tuple[Backend, Path]) -> None:
    backend, outside = planted
    store = backend.make(10**6)
    store.put("p/ok", b"fine")
    assert backend.fs_root is not None
    os.symlink(outside, backend.fs_root / "p" / "link")
    with pytest.raises(InvalidKey):
        store.get("p/link/secret")
    with pytest.raises(InvalidKey):
        store.head("p/link/secret")
    with pytest.raises(InvalidKey):
        store.put("p/link/planted", b"evil")
    with pytest.raises(InvalidKey):
        store.append("p/link/planted", 0, b"evil")
    with pytest.raises(InvalidKey):
        store.delete("p/link/secret")
    with pytest.raises(InvalidKey):
        store.list("p/link/")
    assert [i.key for i in store.list()] == ["p/ok"]  # the link is not followed
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert (outside / "secret").read_bytes() == b"top secret"


@pytest.mark.parametrize("backend", ["fs", "http"], indirect=True)
def test_symlinked_file_and_root_level_link(planted: tuple[Backend, Path]) -> None:
    backend, outside = planted
    store = backend.make(10**6)
    store.put("d/keep", b"k")
    assert backend.fs_root is not None
    os.symlink(outside / "secret", backend.fs_root / "d" / "secret")
    os.symlink(outside, backend.fs_root / "top")
    os.symlink(outside / "missing", backend.fs_root / "d" / "dangling")
    for key in ("d/secret", "top/secret"):
        with pytest.raises(InvalidKey):
            store.get(key)
        with pytest.raises(InvalidKey):
            store.get_range(key, 0, 3)
        with pytest.raises(InvalidKey):
            store.put(key, b"overwritten")
        with pytest.raises(InvalidKey):
            store.append(key, 10, b"more")
        with pytest.raises(InvalidKey):
            store.delete(key)
    with pytest.raises(InvalidKey):
        store.append("d/dangling", 0, b"created through a dangling link")
    with pytest.raises(InvalidKey):
        store.put("d/dangling", b"x")
    assert not (outside / "missing").exists()
    assert (outside / "secret").read_bytes() == b"top secret"
    assert [i.key for i in store.list()] == ["d/keep"]


def test_fifo_is_not_an_object(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "objects")
    os.mkfifo(tmp_path / "objects" / "fifo")
    with pytest.raises(ObjectNotFound):
        store.get("fifo")
    with pytest.raises(KeyConflict):
        store.append("fifo", 0, b"x")
    assert store.list() == []
