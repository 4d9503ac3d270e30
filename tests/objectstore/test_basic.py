"""put / get / head / list / delete / compact, identical on every backend."""

from __future__ import annotations

import hashlib
import io
from datetime import UTC, datetime, timedelta

import pytest

from otto.objectstore import (
    DEFAULT_CONTENT_TYPE,
    KeyConflict,
    ObjectNotFound,
    ObjectStore,
)


def test_put_get_head(store: ObjectStore) -> None:
    data = b"hello, object store\n"
    info = store.put("p1/artifacts/hello.txt", data, content_type="text/plain")
    assert (info.key, info.size, info.content_type) == (
        "p1/artifacts/hello.txt",
        len(data),
        "text/plain",
    )
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert store.get("p1/artifacts/hello.txt") == data
    head = store.head("p1/artifacts/hello.txt")
    assert (head.size, head.content_type, head.sha256) == (info.size, "text/plain", info.sha256)
    assert abs(head.modified - datetime.now(UTC)) < timedelta(minutes=5)


def test_put_from_a_stream_and_default_content_type(store: ObjectStore) -> None:
    data = bytes(range(256)) * 9000  # a few chunks' worth
    info = store.put("s/stream.bin", io.BytesIO(data))
    assert info.content_type == DEFAULT_CONTENT_TYPE
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert store.get("s/stream.bin") == data


def test_empty_object(store: ObjectStore) -> None:
    info = store.put("empty", b"")
    assert info.size == 0 and info.sha256 == hashlib.sha256(b"").hexdigest()
    assert store.get("empty") == b""
    assert store.head("empty").size == 0


def test_overwrite_replaces_content_and_metadata(store: ObjectStore) -> None:
    store.put("k", b"first version", content_type="text/plain")
    store.put("k", b"2nd", content_type="application/json")
    assert store.get("k") == b"2nd"
    head = store.head("k")
    assert (head.size, head.content_type) == (3, "application/json")
    assert head.sha256 == hashlib.sha256(b"2nd").hexdigest()


def test_missing_objects(store: ObjectStore) -> None:
    for call in (store.get, store.head, store.delete, store.compact, store.open):
        with pytest.raises(ObjectNotFound):
            call("no/such/object")
    with pytest.raises(ObjectNotFound):
        store.get_range("no/such/object", 0, 10)


def test_list_sorted_with_prefixes(store: ObjectStore) -> None:
    keys = ["b/2", "a/1", "a/b/c", "a-x", "ab", "a/0", "z"]
    for key in keys:
        store.put(key, key.encode())
    assert [i.key for i in store.list()] == sorted(keys)
    assert [i.key for i in store.list("a/")] == ["a/0", "a/1", "a/b/c"]
    assert [i.key for i in store.list("a")] == ["a-x", "a/0", "a/1", "a/b/c", "ab"]
    assert [i.key for i in store.list("a/b")] == ["a/b/c"]
    assert store.list("nothing/") == []
    info = {i.key: i for i in store.list("b/")}["b/2"]
    assert (info.size, info.sha256) == (3, hashlib.sha256(b"b/2").hexdigest())


def test_delete(store: ObjectStore) -> None:
    store.put("d/one", b"1")
    store.put("d/two", b"2")
    store.delete("d/one")
    assert [i.key for i in store.list("d/")] == ["d/two"]
    with pytest.raises(ObjectNotFound):
        store.get("d/one")
    store.delete("d/two")
    assert store.list() == []
    store.put("d", b"a key that was a directory before")  # nothing of d/ is left
    assert store.get("d") == b"a key that was a directory before"


def test_a_key_cannot_be_an_object_and_a_prefix(store: ObjectStore) -> None:
    store.put("x/y", b"1")
    with pytest.raises(KeyConflict):
        store.put("x", b"2")
    with pytest.raises(KeyConflict):
        store.append("x", 0, b"2")
    store.put("f", b"3")
    with pytest.raises(KeyConflict):
        store.put("f/g", b"4")
    with pytest.raises(KeyConflict):
        store.append("f/g/h", 0, b"4")
    assert [i.key for i in store.list()] == ["f", "x/y"]


def test_open_streams_chunks(store: ObjectStore) -> None:
    data = b"0123456789" * 300_000  # 3 MB: several chunks
    store.put("big", data)
    with store.open("big") as stream:
        assert stream.info.size == len(data)
        chunks = list(stream)
    assert len(chunks) > 1 and b"".join(chunks) == data


def test_compact_records_the_checksum(store: ObjectStore) -> None:
    store.append("log", 0, b"line 1\n")
    store.append("log", 7, b"line 2\n")
    assert store.head("log").sha256 is None
    info = store.compact("log")
    expected = hashlib.sha256(b"line 1\nline 2\n").hexdigest()
    assert (info.size, info.sha256) == (14, expected)
    assert store.head("log").sha256 == expected
    assert store.get("log") == b"line 1\nline 2\n"
    assert [(i.key, i.size, i.sha256) for i in store.list()] == [("log", 14, expected)]
    assert store.append("log", 14, b"more") == 18  # still appendable
    assert store.get("log") == b"line 1\nline 2\nmore"
