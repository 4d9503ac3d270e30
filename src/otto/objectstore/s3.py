"""The S3 backend (boto3), for any S3-compatible server.

S3 has no append, and rewriting a log on every chunk is quadratic (a 100 MB log in
64 KiB chunks would move ~80 GB). Instead each appended chunk is its own hidden
object, named by its start offset under the object's key (layout in `s3layout`):

- append at N = HEAD the base (its generation), a one-key LIST for the tail chunk
  (size = tail start + tail size), then a conditional PUT (`If-None-Match: *`) of the
  chunk at N. Three requests whatever the log's size: linear in total. Two writers
  racing at the same offset cannot both win (one PUT finds the key taken and re-reads
  the state, becoming a harmless duplicate or an `OffsetMismatch`).
- reads, head and list compose base + chunks (a 100 MB log = 1 600 chunks = two LIST
  pages, then ranged GETs of just the pieces a range needs), so a log is readable
  while it grows. `compact` (for the writer, once done) rewrites it as one object.
- put spools the upload (hashing it), then uploads it with a single PUT, or a
  multipart upload above 64 MiB; S3 only makes an object visible once complete, so a
  failed upload never replaces a good one. Each write of a base gets a new
  generation, so the old chunks stop counting at once, then are deleted.
- A key cannot be both an object and a prefix of other keys (as in the filesystem
  backend, and as MinIO does): put and the first append check that with LISTs.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from otto.objectstore.base import (
    CHUNK_SIZE,
    DEFAULT_CONTENT_TYPE,
    DEFAULT_MAX_OBJECT_SIZE,
    Data,
    ObjectInfo,
    ObjectStore,
    ObjectStream,
    check_content_type,
    check_range,
    clamp,
)
from otto.objectstore.errors import (
    InvalidArgument,
    KeyConflict,
    ObjectNotFound,
    ObjectStoreError,
    ObjectTooLarge,
    OffsetMismatch,
)
from otto.objectstore.keys import is_valid_key, validate_key, validate_prefix
from otto.objectstore.s3layout import Piece, chunk_dir, chunk_key, contiguous, parse_chunk
from otto.objectstore.streams import IterReader, spool

_MISSING = {"404", "NoSuchKey", "NotFound"}
_RACED = {"412", "PreconditionFailed", "409", "ConditionalRequestConflict"}
_RETRIES = 5
_MULTIPART = 64 * 1024 * 1024


def _pieces_of(listing: dict[str, Any]) -> list[Piece]:
    found = []
    for obj in listing.get("Contents", []):
        parsed = parse_chunk(obj["Key"])
        if parsed is not None:
            found.append(Piece(obj["Key"], parsed[2], obj["Size"], obj["LastModified"]))
    return found


def _foreign_gen(etag: str) -> str:
    """The generation of a base written by another tool: tied to its content."""
    return "e" + hashlib.sha256(etag.encode()).hexdigest()[:16]


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@dataclass(frozen=True)
class _Base:
    s3key: str
    size: int
    content_type: str
    sha256: str | None
    gen: str
    etag: str
    modified: datetime


class S3Store(ObjectStore):
    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        prefix: str = "",
        max_object_size: int = DEFAULT_MAX_OBJECT_SIZE,
    ) -> None:
        prefix = prefix.strip("/")
        self.prefix = validate_key(prefix) + "/" if prefix else ""
        self.bucket = bucket
        self.max_object_size = max_object_size
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(
                s3={"addressing_style": "path" if endpoint_url else "auto"},
                retries={"max_attempts": 4, "mode": "standard"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )
        self._transfer = TransferConfig(
            multipart_threshold=_MULTIPART, multipart_chunksize=_MULTIPART
        )

    def __repr__(self) -> str:
        return f"S3Store({self.bucket!r}, prefix={self.prefix!r})"

    # -- reading the layout ---------------------------------------------------------

    def _head_base(self, key: str) -> _Base | None:
        s3key = self.prefix + key
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=s3key)
        except ClientError as error:
            if _code(error) in _MISSING:
                return None
            raise
        meta = r.get("Metadata", {})
        return _Base(
            s3key=s3key,
            size=int(r["ContentLength"]),
            content_type=r.get("ContentType") or DEFAULT_CONTENT_TYPE,
            sha256=meta.get("otto-sha256"),
            gen=meta.get("otto-gen") or _foreign_gen(r["ETag"]),
            etag=r["ETag"],
            modified=r["LastModified"],
        )

    def _need_base(self, key: str) -> _Base:
        base = self._head_base(key)
        if base is None:
            raise ObjectNotFound(f"no object {key!r}")
        return base

    def _chunks(self, base: _Base) -> list[Piece]:
        found = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=chunk_dir(base.s3key, base.gen)
        )
        for page in pages:
            found += _pieces_of(page)
        return found

    def _pieces(self, base: _Base, tail_only: bool = False) -> list[Piece]:
        """Base + chunks; with `tail_only`, base + the last chunk (enough for the size)."""
        first = Piece(base.s3key, 0, base.size, base.modified)
        if not tail_only:
            return contiguous(first, self._chunks(base))
        r = self.client.list_objects_v2(
            Bucket=self.bucket, Prefix=chunk_dir(base.s3key, base.gen), MaxKeys=1
        )
        return [first, *_pieces_of(r)[:1]]

    @staticmethod
    def _info(key: str, base: _Base, pieces: list[Piece]) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=pieces[-1].end,
            content_type=base.content_type,
            sha256=base.sha256 if len(pieces) == 1 else None,
            modified=max(p.modified for p in pieces),
        )

    # -- the interface ----------------------------------------------------------------

    def head(self, key: str) -> ObjectInfo:
        validate_key(key)
        base = self._need_base(key)
        return self._info(key, base, self._pieces(base, tail_only=True))

    def open(self, key: str, start: int = 0, end: int | None = None) -> ObjectStream:
        validate_key(key)
        check_range(start, end)
        for _ in range(_RETRIES):
            base = self._need_base(key)
            pieces = self._pieces(base)
            info = self._info(key, base, pieces)
            first, stop = clamp(start, end, info.size)
            wanted = [
                (p, max(first, p.start) - p.start, min(stop, p.end) - p.start)
                for p in pieces
                if first < stop and p.start < stop and p.end > first
            ]
            try:  # the first GET is eager, so a concurrent rewrite is caught here
                etag = base.etag if wanted and wanted[0][0].s3key == base.s3key else ""
                body = self._get(wanted[0], etag) if wanted else None
            except ClientError as error:
                if _code(error) in _MISSING | _RACED:
                    continue
                raise
            return self._stream(info, wanted, body)
        raise ObjectStoreError(f"{key!r} kept changing while being opened")

    def _get(self, wanted: tuple[Piece, int, int], etag: str) -> Any:
        piece, a, b = wanted
        extra = {"IfMatch": etag} if etag else {}
        r = self.client.get_object(
            Bucket=self.bucket, Key=piece.s3key, Range=f"bytes={a}-{b - 1}", **extra
        )
        return r["Body"]

    def _stream(
        self, info: ObjectInfo, wanted: list[tuple[Piece, int, int]], body: Any
    ) -> ObjectStream:
        current = [body]

        def chunks() -> Iterator[bytes]:
            for i, part in enumerate(wanted):
                if i:
                    try:
                        current[0] = self._get(part, "")
                    except ClientError as error:
                        if _code(error) in _MISSING:
                            raise ObjectNotFound(f"{info.key!r} was replaced while read") from None
                        raise
                yield from current[0].iter_chunks(CHUNK_SIZE)
                current[0].close()

        def close() -> None:
            if current[0] is not None:
                current[0].close()

        return ObjectStream(info, chunks(), close)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        validate_prefix(prefix)
        keys: list[str] = []
        chunks: dict[tuple[str, str], list[Piece]] = defaultdict(list)
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + prefix
        )
        for page in pages:
            for obj in page.get("Contents", []):
                key = obj["Key"][len(self.prefix) :]
                parsed = parse_chunk(obj["Key"])
                if parsed is not None:
                    piece = Piece(obj["Key"], parsed[2], obj["Size"], obj["LastModified"])
                    chunks[(parsed[0], parsed[1])].append(piece)
                elif is_valid_key(key):
                    keys.append(key)
        with ThreadPoolExecutor(max_workers=8) as pool:
            bases = list(pool.map(self._head_base, keys))
        found = []
        for key, base in zip(keys, bases, strict=True):
            if base is not None:
                first = Piece(base.s3key, 0, base.size, base.modified)
                pieces = contiguous(first, chunks.get((base.s3key, base.gen), []))
                found.append(self._info(key, base, pieces))
        return sorted(found, key=lambda info: info.key)

    # -- writing ----------------------------------------------------------------------

    def put(self, key: str, data: Data, content_type: str | None = None) -> ObjectInfo:
        validate_key(key)
        content_type = check_content_type(content_type)
        self._check_conflicts(key)
        body, size, sha256 = spool(key, data, self.max_object_size)
        gen = secrets.token_hex(8)
        with body:
            self.client.upload_fileobj(
                body,
                self.bucket,
                self.prefix + key,
                ExtraArgs={
                    "ContentType": content_type,
                    "Metadata": {"otto-gen": gen, "otto-sha256": sha256},
                },
                Config=self._transfer,
            )
        self._drop_chunks(self.prefix + key, keep=gen)
        return ObjectInfo(key, size, content_type, sha256, datetime.now(UTC))

    def _check_conflicts(self, key: str) -> None:
        parts = key.split("/")
        for i in range(1, len(parts)):
            ancestor = self.prefix + "/".join(parts[:i])
            r = self.client.list_objects_v2(Bucket=self.bucket, Prefix=ancestor, MaxKeys=1)
            if any(obj["Key"] == ancestor for obj in r.get("Contents", [])):
                raise KeyConflict(
                    f"cannot store {key!r}: {parts[i - 1]!r} on its path is an object"
                )
        below = self.prefix + key + "/"
        r = self.client.list_objects_v2(Bucket=self.bucket, Prefix=below, Delimiter="/", MaxKeys=2)
        entries = [o["Key"] for o in r.get("Contents", [])]
        entries += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        if any(not e.startswith(chunk_dir(self.prefix + key)) for e in entries):
            raise KeyConflict(f"cannot store {key!r}: it is a prefix of other keys")

    def _drop_chunks(self, s3key: str, keep: str | None = None) -> None:
        """Delete the chunks of every generation but `keep` (already invisible)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=chunk_dir(s3key)
        )
        for page in pages:
            doomed = [
                {"Key": obj["Key"]}
                for obj in page.get("Contents", [])
                if keep is None or not obj["Key"].startswith(chunk_dir(s3key, keep))
            ]
            if doomed:
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": doomed, "Quiet": True}
                )

    def delete(self, key: str) -> None:
        validate_key(key)
        base = self._need_base(key)
        self.client.delete_object(Bucket=self.bucket, Key=base.s3key)
        self._drop_chunks(base.s3key)

    def append(self, key: str, offset: int, data: bytes, content_type: str | None = None) -> int:
        validate_key(key)
        content_type = check_content_type(content_type)
        data = bytes(data)
        if offset < 0:
            raise InvalidArgument(f"append offset {offset} is negative")
        if offset + len(data) > self.max_object_size:
            raise ObjectTooLarge(key, self.max_object_size)
        for _ in range(_RETRIES):
            base = self._head_base(key)
            if base is None:
                if offset != 0:
                    raise OffsetMismatch(key, offset, 0)
                self._check_conflicts(key)
                if not self._create_empty(key, content_type):
                    continue  # created by someone else meanwhile: look again
                base = self._need_base(key)
            size = self._pieces(base, tail_only=True)[-1].end
            if offset != size:
                if (
                    offset + len(data) <= size
                    and self.get_range(key, offset, offset + len(data)) == data
                ):
                    return size
                raise OffsetMismatch(key, offset, size)
            if not data:
                return size
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=chunk_key(base.s3key, base.gen, offset),
                    Body=data,
                    IfNoneMatch="*",
                )
            except ClientError as error:
                if _code(error) in _RACED:
                    continue  # another writer took this offset: re-read the state
                raise
            return offset + len(data)
        raise ObjectStoreError(f"append to {key!r} kept racing with other writers")

    def _create_empty(self, key: str, content_type: str) -> bool:
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.prefix + key,
                Body=b"",
                ContentType=content_type,
                Metadata={"otto-gen": secrets.token_hex(8)},
                IfNoneMatch="*",
            )
        except ClientError as error:
            if _code(error) in _RACED:
                return False
            raise
        return True

    def compact(self, key: str) -> ObjectInfo:
        validate_key(key)
        base = self._need_base(key)
        pieces = self._pieces(base)
        info = self._info(key, base, pieces)
        if len(pieces) == 1 and info.sha256 is not None:
            return info
        with self.open(key) as stream:
            return self.put(key, IterReader(stream), base.content_type)
