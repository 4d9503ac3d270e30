"""The object store: logs, artifacts and step libraries behind keys.

One interface, `ObjectStore`, three implementations with the same behaviour (one
shared test suite runs against all of them):

- `FilesystemStore(root)` — the default, under `$OTTO_HOME/objects` (module `fs`);
- `S3Store(bucket, endpoint_url=..., prefix=...)` — any S3-compatible server (`s3`);
- `HttpObjectStore(base_url, token=None)` — the server's `/v1/objects` API (`client`),
  served by `otto.objectstore.routes.routes(store)`.

`S3Store` and `HttpObjectStore` are imported when first used: boto3 and httpx would
otherwise weigh on every process that only needs the filesystem (each forked agent).

`open_store(url)` picks one from a URL. Semantics, whatever the backend:

- keys follow `otto.objectstore.keys` (relative, no `..`, no encoded tricks, ...);
  a key that breaks them, or that would leave the store, raises `InvalidKey`;
- `put` is atomic: readers see the old object or the new one, whole; a failed or
  partial upload never replaces a good object. Over `max_object_size`: `ObjectTooLarge`;
- `append(key, offset, data)` writes at `offset` only if it is the current size
  (offset 0 on a missing key creates it); re-sending a chunk already stored there is
  harmless and returns the current size; anything else raises `OffsetMismatch`
  carrying `current_size`. Objects can be read and listed while being appended to;
- ranges are half-open `[start, end)` like slices, clipped to the object's size;
- a key cannot be an object and the prefix of other keys (`a` and `a/b`): `KeyConflict`;
- `ObjectInfo.sha256` is known for objects written by `put` or sealed by `compact`,
  `None` once appended to (the checksum of a growing log is not worth a full read).
"""

from typing import TYPE_CHECKING, Any

from otto.objectstore.base import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_MAX_OBJECT_SIZE,
    ObjectInfo,
    ObjectStore,
    ObjectStream,
)
from otto.objectstore.errors import (
    InvalidArgument,
    InvalidKey,
    KeyConflict,
    ObjectNotFound,
    ObjectStoreError,
    ObjectTooLarge,
    OffsetMismatch,
    StoreFull,
    StoreUnavailable,
)
from otto.objectstore.factory import default_root, open_store
from otto.objectstore.fs import FilesystemStore
from otto.objectstore.keys import MAX_KEY_BYTES, validate_key, validate_prefix

if TYPE_CHECKING:
    from otto.objectstore.client import HttpObjectStore
    from otto.objectstore.s3 import S3Store

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "DEFAULT_MAX_OBJECT_SIZE",
    "MAX_KEY_BYTES",
    "FilesystemStore",
    "HttpObjectStore",
    "InvalidArgument",
    "InvalidKey",
    "KeyConflict",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStoreError",
    "ObjectStream",
    "ObjectTooLarge",
    "OffsetMismatch",
    "S3Store",
    "StoreFull",
    "StoreUnavailable",
    "default_root",
    "open_store",
    "validate_key",
    "validate_prefix",
]


def __getattr__(name: str) -> Any:
    if name == "HttpObjectStore":
        from otto.objectstore.client import HttpObjectStore

        return HttpObjectStore
    if name == "S3Store":
        from otto.objectstore.s3 import S3Store

        return S3Store
    raise AttributeError(f"module 'otto.objectstore' has no attribute {name!r}")
