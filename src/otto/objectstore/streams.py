"""Byte-stream helpers shared by the backends."""

from __future__ import annotations

import hashlib
import io
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from otto.objectstore.base import CHUNK_SIZE, Data
from otto.objectstore.errors import ObjectTooLarge

SPOOL_IN_MEMORY = 8 * 1024 * 1024


def chunks_of(data: Data, key: str, limit: int) -> Iterator[bytes]:
    """Yield `data` (bytes or a binary stream) in chunks, refusing more than `limit` bytes."""
    if isinstance(data, bytes | bytearray | memoryview):
        if len(data) > limit:
            raise ObjectTooLarge(key, limit)
        view = memoryview(data)
        for i in range(0, len(view), CHUNK_SIZE):
            yield bytes(view[i : i + CHUNK_SIZE])
        return
    total = 0
    while chunk := data.read(CHUNK_SIZE):
        total += len(chunk)
        if total > limit:
            raise ObjectTooLarge(key, limit)
        yield chunk


def spool(key: str, data: Data, limit: int) -> tuple[IO[bytes], int, str]:
    """`data` as a seekable file (spilling to disk past 8 MiB), its size and sha256.

    Raises `ObjectTooLarge` past `limit`, and whatever reading `data` raises."""
    if isinstance(data, bytes | bytearray | memoryview):
        if len(data) > limit:
            raise ObjectTooLarge(key, limit)
        return io.BytesIO(data), len(data), hashlib.sha256(data).hexdigest()
    file = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    try:
        digest, size = hashlib.sha256(), 0
        for chunk in chunks_of(data, key, limit):
            file.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return file, size, digest.hexdigest()


class IterReader(io.RawIOBase):
    """A read-only binary file over an iterator of chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = chunk
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n
