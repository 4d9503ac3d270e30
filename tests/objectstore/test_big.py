"""A 20 MB object round trip, byte-exact, on every backend; and a log of many chunks."""

from __future__ import annotations

import hashlib
import io
import os

from otto.objectstore import ObjectStore

MB = 1024 * 1024


def test_20_mb_round_trip(store: ObjectStore) -> None:
    data = os.urandom(20 * MB)
    digest = hashlib.sha256(data).hexdigest()
    info = store.put("p/artifacts/big.bin", io.BytesIO(data))
    assert (info.size, info.sha256) == (len(data), digest)
    assert store.head("p/artifacts/big.bin").sha256 == digest
    received = hashlib.sha256()
    size = 0
    with store.open("p/artifacts/big.bin") as stream:
        for chunk in stream:
            received.update(chunk)
            size += len(chunk)
    assert (size, received.hexdigest()) == (len(data), digest)
    assert store.get_range("p/artifacts/big.bin", 7 * MB, 7 * MB + 10) == data[7 * MB : 7 * MB + 10]


def test_a_log_of_many_chunks(store: ObjectStore) -> None:
    chunk = bytes(range(256)) * 256  # 64 KiB, as an agent would send
    offset = 0
    for i in range(48):  # 3 MiB
        offset = store.append("p/c/s.log", offset, bytes([i]) + chunk[1:])
    whole = store.get("p/c/s.log")
    assert len(whole) == offset == 48 * len(chunk)
    assert [whole[i * len(chunk)] for i in range(48)] == list(range(48))
    sealed = store.compact("p/c/s.log")
    assert sealed.sha256 == hashlib.sha256(whole).hexdigest()
    assert store.get("p/c/s.log") == whole
    assert [i.key for i in store.list("p/")] == ["p/c/s.log"]
