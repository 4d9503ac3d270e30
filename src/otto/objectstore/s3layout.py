"""How the S3 backend lays objects out in the bucket (see `s3` for the why).

- `<prefix><key>`: the base object. Every object has one: `put` writes it with the
  content, `append` on a missing key creates it empty. User metadata: `otto-gen`, a
  random generation id given at each write of the base, and `otto-sha256`.
- `<prefix><key>/.otto-chunks/<gen>/<inv>`: one appended chunk starting at byte
  `start`, with `inv = 10**16 - 1 - start` written as 16 digits, so the bucket's
  ascending key order lists a log's chunks newest first and a one-key listing finds
  its tail. Only chunks of the base's current generation count: rewriting or
  deleting the base orphans the old ones in one atomic step; they are removed after.
  Keys never hold a `.otto` segment, so chunks can never collide with a user's key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

CHUNKS = "/.otto-chunks/"
_WIDTH = 16
_TOP = 10**_WIDTH - 1


@dataclass(frozen=True)
class Piece:
    """One stored piece of an object's content: bytes [start, start + size)."""

    s3key: str
    start: int
    size: int
    modified: datetime

    @property
    def end(self) -> int:
        return self.start + self.size


def chunk_dir(base: str, gen: str | None = None) -> str:
    return base + CHUNKS + ("" if gen is None else gen + "/")


def chunk_key(base: str, gen: str, start: int) -> str:
    return f"{chunk_dir(base, gen)}{_TOP - start:0{_WIDTH}d}"


def parse_chunk(s3key: str) -> tuple[str, str, int] | None:
    """(base s3 key, generation, start) of a chunk key, or None if it is not one."""
    base, sep, rest = s3key.partition(CHUNKS)
    gen, _, inv = rest.partition("/")
    if not sep or not gen or len(inv) != _WIDTH or not inv.isdigit():
        return None
    return base, gen, _TOP - int(inv)


def contiguous(first: Piece | None, chunks: list[Piece]) -> list[Piece]:
    """The pieces making up the content: the base (if any) then the chunks in order,
    up to the first gap (a delete or compaction running concurrently leaves a valid
    prefix, never a content with a hole in it)."""
    pieces = [first] if first is not None else []
    pos = first.size if first is not None else 0
    for chunk in sorted(chunks, key=lambda c: c.start):
        if chunk.start != pos:
            break
        pieces.append(chunk)
        pos = chunk.end
    return pieces
