"""A failed or partial upload never replaces a good object and leaves no litter."""

from __future__ import annotations

import io

import pytest

from otto.objectstore import ObjectStore, ObjectTooLarge

from .conftest import Backend


class Boom(Exception):
    pass


class FailingStream(io.RawIOBase):
    """Yields `good` bytes, then fails as a dropped connection would."""

    def __init__(self, good: int) -> None:
        self.left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.left <= 0:
            raise Boom("the upload broke midway")
        n = min(len(buffer), self.left, 64 * 1024)
        buffer[:n] = b"x" * n
        self.left -= n
        return n


def test_failed_upload_keeps_the_old_object(store: ObjectStore) -> None:
    store.put("a/good", b"the good content", content_type="text/plain")
    with pytest.raises(Boom):  # the caller's own error, from every backend
        store.put("a/good", FailingStream(3 * 1024 * 1024))
    assert store.get("a/good") == b"the good content"
    assert store.head("a/good").content_type == "text/plain"
    assert [i.key for i in store.list()] == ["a/good"]


def test_failed_first_upload_creates_nothing(store: ObjectStore) -> None:
    with pytest.raises(Boom):
        store.put("new/object", FailingStream(100_000))
    assert store.list() == []


def test_failed_upload_leaves_no_temp_files(backend: Backend) -> None:
    store = backend.make(1024 * 1024)
    store.put("k", b"v")
    with pytest.raises(Boom):
        store.put("k", FailingStream(500_000))
    with pytest.raises(ObjectTooLarge):
        store.put("k", io.BytesIO(b"y" * 2_000_000))
    assert store.get("k") == b"v"
    if backend.fs_root is not None:
        assert sorted(p.name for p in backend.fs_root.iterdir()) == [".otto-meta.k", "k"]


def test_too_large_is_refused_and_the_old_object_stays(backend: Backend) -> None:
    store = backend.make(1000)
    store.put("limited", b"ok")
    with pytest.raises(ObjectTooLarge):
        store.put("limited", b"z" * 1001)
    with pytest.raises(ObjectTooLarge):
        store.put("limited", io.BytesIO(b"z" * 5000))
    store.put("limited", b"z" * 1000)  # exactly the limit is fine
    with pytest.raises(ObjectTooLarge):
        store.append("limited", 1000, b"!")
    assert store.get("limited") == b"z" * 1000
