"""Append-at-offset for logs: refused at the wrong offset, harmless when repeated."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from otto.objectstore import (
    DEFAULT_CONTENT_TYPE,
    FilesystemStore,
    InvalidArgument,
    ObjectNotFound,
    ObjectStore,
    OffsetMismatch,
)

from .conftest import Backend


def test_sequential_appends(store: ObjectStore) -> None:
    assert store.append("p/c/step.log", 0, b"hello ") == 6
    assert store.append("p/c/step.log", 6, b"world") == 11
    assert store.append("p/c/step.log", 11, b"\n") == 12
    assert store.get("p/c/step.log") == b"hello world\n"
    head = store.head("p/c/step.log")
    assert (head.size, head.sha256) == (12, None)


def test_wrong_offset_is_refused_with_the_current_size(store: ObjectStore) -> None:
    store.append("log", 0, b"abcdef")
    for offset in (3, 7, 100):
        with pytest.raises(OffsetMismatch) as refused:
            store.append("log", offset, b"XYZ")
        assert refused.value.current_size == 6
    assert store.get("log") == b"abcdef"


def test_a_resent_chunk_is_harmless(store: ObjectStore) -> None:
    assert store.append("log", 0, b"first-") == 6
    assert store.append("log", 6, b"second") == 12
    assert store.append("log", 6, b"second") == 12  # the retry of a lost response
    assert store.append("log", 0, b"first-") == 12  # an older chunk, still identical
    assert store.append("log", 2, b"rst-se") == 12  # any stored slice, byte-equal
    assert store.get("log") == b"first-second"


def test_a_different_chunk_at_an_old_offset_is_refused(store: ObjectStore) -> None:
    store.append("log", 0, b"first-second")
    with pytest.raises(OffsetMismatch) as refused:
        store.append("log", 6, b"SECOND")
    assert refused.value.current_size == 12
    with pytest.raises(OffsetMismatch):
        store.append("log", 6, b"second and more")  # overlaps the end: not a resend
    assert store.get("log") == b"first-second"


def test_missing_key(store: ObjectStore) -> None:
    with pytest.raises(OffsetMismatch) as refused:
        store.append("new/log", 5, b"x")
    assert refused.value.current_size == 0
    with pytest.raises(ObjectNotFound):
        store.get("new/log")
    assert store.append("new/log", 0, b"") == 0  # offset 0 creates, even empty
    assert store.get("new/log") == b""
    assert store.append("new/log", 0, b"now") == 3
    with pytest.raises(InvalidArgument):
        store.append("new/log", -1, b"x")


def test_content_type_is_set_by_the_append_that_creates(store: ObjectStore) -> None:
    store.append("typed.log", 0, b"a", content_type="text/plain; charset=utf-8")
    store.append("typed.log", 1, b"b", content_type="application/json")  # ignored
    assert store.head("typed.log").content_type == "text/plain; charset=utf-8"
    assert store.compact("typed.log").content_type == "text/plain; charset=utf-8"


def test_read_and_list_while_appending(store: ObjectStore) -> None:
    written = b""
    for i in range(20):
        line = f"line {i}\n".encode()
        store.append("run/ctx/build.log", len(written), line)
        written += line
        if i % 5 == 4:
            assert store.get("run/ctx/build.log") == written
            assert store.get_range("run/ctx/build.log", len(written) - len(line)) == line
            (info,) = store.list("run/")
            assert (info.key, info.size) == ("run/ctx/build.log", len(written))
            assert store.head("run/ctx/build.log").size == len(written)


def test_append_after_put_and_put_after_append(store: ObjectStore) -> None:
    store.put("mixed", b"base|", content_type="text/plain")
    assert store.append("mixed", 5, b"tail") == 9
    assert store.get("mixed") == b"base|tail"
    head = store.head("mixed")
    assert (head.content_type, head.sha256) == ("text/plain", None)
    store.put("mixed", b"fresh")  # replaces base and appended chunks at once
    assert store.get("mixed") == b"fresh"
    assert store.append("mixed", 5, b"!") == 6
    assert store.get("mixed") == b"fresh!"
    assert [(i.key, i.size) for i in store.list()] == [("mixed", 6)]


def test_delete_a_log(store: ObjectStore) -> None:
    for i in range(5):
        store.append("gone.log", i, b"x")
    store.delete("gone.log")
    assert store.list() == []
    with pytest.raises(ObjectNotFound):
        store.head("gone.log")
    assert store.append("gone.log", 0, b"new") == 3  # a fresh log, no old chunks
    assert store.get("gone.log") == b"new"


@pytest.mark.parametrize("backend", ["fs", "http"], indirect=True)
def test_racing_writers_never_lose_an_acknowledged_chunk(backend: Backend) -> None:
    """Writers race at the same offsets: each offset has one winner, every chunk a
    writer was told is stored is in the log, and the log is whole chunks only.
    Not run on S3: there the guarantee is S3's atomic `If-None-Match: *` PUT, which
    moto_server checks without a lock (check-then-write across its threads)."""
    store = backend.make(10**6)
    store.append("race.log", 0, b"")
    acknowledged: list[bytes] = []
    lock = threading.Lock()

    def writer(name: str) -> None:
        for i in range(15):
            chunk = f"<{name}{i}>".encode()
            while True:
                size = store.head("race.log").size
                try:
                    store.append("race.log", size, chunk)
                    break
                except OffsetMismatch:
                    continue
            with lock:
                acknowledged.append(chunk)

    threads = [threading.Thread(target=writer, args=(n,)) for n in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = store.get("race.log")
    assert sorted(acknowledged) == sorted(log.replace(b"><", b">\n<").split(b"\n"))


def test_metadata_left_by_an_older_object_never_describes_a_log(tmp_path: Path) -> None:
    """A log (default content type) has no metadata side file until it is sealed; one
    left behind by a crash between deleting an object and its metadata is removed, lest
    the new file reuse the old one's inode number."""
    store = FilesystemStore(tmp_path)
    store.put("p/c.log", b"old", content_type="text/plain")
    side = tmp_path / "p" / ".otto-meta.c.log"
    stale = side.read_bytes()
    store.delete("p/c.log")
    side.parent.mkdir()
    side.write_bytes(stale)
    assert store.append("p/c.log", 0, b"new") == 3
    assert not side.exists()
    info = store.head("p/c.log")
    assert (info.content_type, info.sha256) == (DEFAULT_CONTENT_TYPE, None)
    assert store.compact("p/c.log").sha256 == hashlib.sha256(b"new").hexdigest()
