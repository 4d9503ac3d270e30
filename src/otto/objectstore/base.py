"""The one interface every backend implements, and the value types it speaks in."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import BinaryIO

from otto.objectstore.errors import InvalidArgument

DEFAULT_CONTENT_TYPE = "application/octet-stream"
DEFAULT_MAX_OBJECT_SIZE = 5 * 1024**3
CHUNK_SIZE = 1024 * 1024

Data = bytes | bytearray | memoryview | BinaryIO
_CONTENT_TYPE = re.compile(r"[\x21-\x7e][\x20-\x7e]{0,254}")


@dataclass(frozen=True)
class ObjectInfo:
    """What `head` and `list` report. `sha256` is the hex digest of the content when
    known: always for objects written by `put` or sealed by `compact`; `None` for an
    object appended to since (its content may still be growing)."""

    key: str
    size: int
    content_type: str
    sha256: str | None
    modified: datetime

    def to_json(self) -> dict[str, object]:
        return {
            "key": self.key,
            "size": self.size,
            "content_type": self.content_type,
            "sha256": self.sha256,
            "modified": self.modified.isoformat(),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ObjectInfo:
        return cls(
            key=str(data["key"]),
            size=int(str(data["size"])),
            content_type=str(data["content_type"]),
            sha256=None if data.get("sha256") is None else str(data["sha256"]),
            modified=datetime.fromisoformat(str(data["modified"])),
        )


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


class ObjectStream(Iterator[bytes]):
    """The content of an object (or of a byte range of it) as chunks of bytes.

    `info` describes the whole object as it was when the stream was opened. Close the
    stream (or use it as a context manager) if you stop reading before the end.
    """

    def __init__(
        self,
        info: ObjectInfo,
        chunks: Iterable[bytes],
        close: Callable[[], None] | None = None,
    ) -> None:
        self.info = info
        self._chunks = iter(chunks)
        self._close = close

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def read(self) -> bytes:
        with self:
            return b"".join(self)

    def close(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            close()

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> ObjectStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_content_type(content_type: str | None) -> str:
    if content_type is None:
        return DEFAULT_CONTENT_TYPE
    if not isinstance(content_type, str) or not _CONTENT_TYPE.fullmatch(content_type):
        raise InvalidArgument(f"content type {content_type!r} is not a valid header value")
    return content_type


def check_range(start: int, end: int | None) -> None:
    if start < 0:
        raise InvalidArgument(f"range start {start} is negative")
    if end is not None and end < start:
        raise InvalidArgument(f"range end {end} is before its start {start}")


def clamp(start: int, end: int | None, size: int) -> tuple[int, int]:
    """The half-open range [start, end) clipped to an object of `size` bytes."""
    stop = size if end is None else min(end, size)
    return min(start, stop), stop


class ObjectStore(ABC):
    """Content behind keys. Every backend behaves the same; see the package docstring."""

    max_object_size: int = DEFAULT_MAX_OBJECT_SIZE

    @abstractmethod
    def put(self, key: str, data: Data, content_type: str | None = None) -> ObjectInfo:
        """Store `data` under `key`, atomically replacing any previous object."""

    @abstractmethod
    def open(self, key: str, start: int = 0, end: int | None = None) -> ObjectStream:
        """Stream bytes [start, end) of the object (to its end when `end` is None)."""

    @abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Describe the object without reading its content."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; `ObjectNotFound` if there is none."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with `prefix`, sorted by key."""

    @abstractmethod
    def append(self, key: str, offset: int, data: bytes, content_type: str | None = None) -> int:
        """Append `data` at `offset`, which must be the current size; return the new size.

        Appending to a missing key at offset 0 creates it (with `content_type`, which is
        otherwise ignored). Re-sending a chunk that is
        already stored at `offset` is harmless and returns the current size; any other
        offset raises `OffsetMismatch` carrying the current size.
        """

    @abstractmethod
    def compact(self, key: str) -> ObjectInfo:
        """Seal an appended object once its writer is done: record its checksum and,
        where the backend stores appends as pieces, merge them into one object."""

    def get(self, key: str) -> bytes:
        return self.open(key).read()

    def get_range(self, key: str, start: int, end: int | None = None) -> bytes:
        """Bytes [start, end) — Python slice semantics, clipped to the object's size."""
        return self.open(key, start, end).read()
