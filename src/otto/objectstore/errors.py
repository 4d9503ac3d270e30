"""The object store's errors: one base class, one subclass per failure a caller can act on.

Each error has a stable `code` (used in the HTTP API's JSON errors) and the HTTP
`status` it maps to, so the server and the HTTP client translate them both ways.
"""

from __future__ import annotations


class ObjectStoreError(Exception):
    """Base class of every object-store error."""

    code = "object_store_error"
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def details(self) -> dict[str, object]:
        """Extra JSON fields for the HTTP error body."""
        return {}


class InvalidKey(ObjectStoreError):
    """The key breaks the key rules or would leave the store (traversal, symlink)."""

    code = "invalid_key"
    status = 400


class InvalidArgument(ObjectStoreError):
    """Any other bad argument: a negative offset, a range ending before it starts, ..."""

    code = "invalid_argument"
    status = 400


class ObjectNotFound(ObjectStoreError):
    code = "not_found"
    status = 404


class KeyConflict(ObjectStoreError):
    """The key is a prefix of existing keys (`a` while `a/b` exists) or the other way round.

    A filesystem cannot hold `a` as a file and as a directory at once; S3 could, but
    the backends behave the same, so S3 refuses it too (as MinIO does).
    """

    code = "key_conflict"
    status = 409


class OffsetMismatch(ObjectStoreError):
    """An append at an offset other than the object's current size."""

    code = "offset_mismatch"
    status = 409

    def __init__(self, key: str, offset: int, current_size: int) -> None:
        super().__init__(
            f"append to {key!r} at offset {offset} refused: the object's size is {current_size}"
        )
        self.key = key
        self.offset = offset
        self.current_size = current_size

    def details(self) -> dict[str, object]:
        return {"current_size": self.current_size}


class ObjectTooLarge(ObjectStoreError):
    code = "too_large"
    status = 413

    def __init__(self, key: str, limit: int) -> None:
        super().__init__(f"object {key!r} would exceed the size limit of {limit} bytes")
        self.key = key
        self.limit = limit

    def details(self) -> dict[str, object]:
        return {"limit": self.limit}


class StoreUnavailable(ObjectStoreError):
    """The store could not be reached (the HTTP client: no connection, a timeout)."""

    code = "unavailable"
    status = 503


class StoreFull(ObjectStoreError):
    """The store's filesystem refused for lack of space (ENOSPC, EDQUOT). Nothing of the
    refused write is kept, so the same append may be sent again once space is freed."""

    code = "disk_full"
    status = 507
