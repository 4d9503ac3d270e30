"""The filesystem backend: one file per object under a root directory (the default,
`$OTTO_HOME/objects`). The layout is readable: key `a/b/c.log` is the file
`<root>/a/b/c.log`.

- put: the content goes to a temp file (`.otto-tmp.*`) in the object's directory,
  is fsynced, then `os.replace`d over the key — a failed or partial upload never
  replaces a good object, and readers see the old or the new content, whole.
- metadata (content type, sha256) lives in a side file `.otto-meta.<name>` holding
  the inode and size it describes; a checksum only counts while both still match,
  so an append (which changes the size) makes it unknown until `compact`. An object
  created by `append` with the default content type has no side file until then.
- append: under an exclusive `flock`, compares the offset with the file's size and
  writes in place with `pwrite` (no fsync: a writer that crashed re-syncs from the
  `OffsetMismatch` it gets). A write the disk refuses (ENOSPC, EDQUOT) is cut back to
  the old size and raised as `StoreFull`: no partial bytes, so a retry resumes.
- no symlink is ever followed below the root (see `fsdirs`); names starting with
  `.otto` are not keys, so temp and side files never show up in `list`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

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
    utc,
)
from otto.objectstore.errors import (
    InvalidArgument,
    KeyConflict,
    ObjectNotFound,
    ObjectTooLarge,
    OffsetMismatch,
    StoreFull,
)
from otto.objectstore.fsdirs import (
    open_dirs,
    parent_dir,
    prune_empty_dirs,
    refuse_symlink,
    walk_files,
)
from otto.objectstore.keys import is_valid_key, validate_key, validate_prefix
from otto.objectstore.streams import chunks_of

_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_WRITE = os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_APPEND = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def _space_errors(key: str) -> Iterator[None]:
    """A write refused for lack of space is `StoreFull` (the HTTP API's 507 `disk_full`)."""
    try:
        yield
    except OSError as exc:
        if exc.errno in _FULL:
            raise StoreFull(f"storing {key!r} refused: {exc.strerror}") from exc
        raise


def _meta_name(name: str) -> str:
    return f".otto-meta.{name}"


def _read_meta(dir_fd: int, name: str) -> dict[str, object]:
    try:
        fd = os.open(_meta_name(name), _READ, dir_fd=dir_fd)
    except OSError:
        return {}
    with os.fdopen(fd, "rb") as f:
        try:
            meta = json.loads(f.read(65536))
        except ValueError:
            return {}
    return meta if isinstance(meta, dict) else {}


def _write_meta(dir_fd: int, name: str, meta: dict[str, object]) -> None:
    tmp = f".otto-tmp.{secrets.token_hex(8)}"
    fd = os.open(tmp, _WRITE | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(meta).encode())
        os.replace(tmp, _meta_name(name), src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def _create_meta(dir_fd: int, name: str, fd: int, content_type: str) -> None:
    """The metadata of an object just created to be appended to. No side file stands
    for the default content type (a log's: the common case, and a file less to write);
    one left behind by a crash is removed, lest its inode number be reused."""
    if content_type != DEFAULT_CONTENT_TYPE:
        _write_meta(dir_fd, name, {"ino": os.fstat(fd).st_ino, "content_type": content_type})
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_meta_name(name), dir_fd=dir_fd)


def _info(key: str, st: os.stat_result, meta: dict[str, object]) -> ObjectInfo:
    same_file = meta.get("ino") == st.st_ino
    content_type = meta.get("content_type") if same_file else None
    sha256 = meta.get("sha256") if same_file and meta.get("size") == st.st_size else None
    return ObjectInfo(
        key=key,
        size=st.st_size,
        content_type=str(content_type or DEFAULT_CONTENT_TYPE),
        sha256=None if sha256 is None else str(sha256),
        modified=utc(st.st_mtime),
    )


class FilesystemStore(ObjectStore):
    def __init__(
        self,
        root: Path | str,
        max_object_size: int = DEFAULT_MAX_OBJECT_SIZE,
        fsync: bool = True,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_object_size = max_object_size
        self.fsync = fsync

    def __repr__(self) -> str:
        return f"FilesystemStore({str(self.root)!r})"

    def _open_file(self, dir_fd: int, name: str, key: str, flags: int) -> int:
        """Open the object's file, never through a symlink, and only if it is a regular
        file (a FIFO or device planted in the store is not an object)."""
        writing = bool(flags & (os.O_WRONLY | os.O_RDWR))
        refuse_symlink(dir_fd, name, key)
        try:
            fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key!r}") from None
        except IsADirectoryError:
            raise KeyConflict(f"{key!r} is a prefix of other keys, not an object") from None
        except FileExistsError:
            raise
        except OSError:
            refuse_symlink(dir_fd, name, key)  # planted between the check and the open
            fd = -1
        if fd < 0 or not stat.S_ISREG(os.fstat(fd).st_mode):
            if fd >= 0:
                os.close(fd)
            if writing:
                raise KeyConflict(f"{key!r} is held by something other than an object")
            raise ObjectNotFound(f"no object {key!r} (not a regular file)")
        return fd

    def put(self, key: str, data: Data, content_type: str | None = None) -> ObjectInfo:
        validate_key(key)
        content_type = check_content_type(content_type)
        with _space_errors(key), parent_dir(self.root, key, create=True) as (dir_fd, name):
            st = refuse_symlink(dir_fd, name, key)
            if st is not None and stat.S_ISDIR(st.st_mode):
                try:
                    os.rmdir(name, dir_fd=dir_fd)  # an empty directory holds no keys
                except OSError:
                    raise KeyConflict(
                        f"cannot store {key!r}: it is a prefix of other keys"
                    ) from None
            tmp = f".otto-tmp.{secrets.token_hex(8)}"
            fd = os.open(tmp, _WRITE | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dir_fd)
            try:
                digest = hashlib.sha256()
                with os.fdopen(fd, "wb") as f:
                    for chunk in chunks_of(data, key, self.max_object_size):
                        f.write(chunk)
                        digest.update(chunk)
                    f.flush()
                    if self.fsync:
                        os.fsync(f.fileno())
                    st = os.fstat(f.fileno())
                meta = {"ino": st.st_ino, "size": st.st_size, "sha256": digest.hexdigest()}
                _write_meta(dir_fd, name, {**meta, "content_type": content_type})
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                if self.fsync:
                    os.fsync(dir_fd)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dir_fd)
                raise
            return _info(key, st, {**meta, "content_type": content_type})

    def open(self, key: str, start: int = 0, end: int | None = None) -> ObjectStream:
        validate_key(key)
        check_range(start, end)
        with parent_dir(self.root, key) as (dir_fd, name):
            fd = self._open_file(dir_fd, name, key, _READ)
            st = os.fstat(fd)
            info = _info(key, st, _read_meta(dir_fd, name))
        first, stop = clamp(start, end, st.st_size)

        def chunks() -> Iterator[bytes]:
            pos = first
            while pos < stop:
                chunk = os.pread(fd, min(CHUNK_SIZE, stop - pos), pos)
                if not chunk:
                    return
                pos += len(chunk)
                yield chunk

        return ObjectStream(info, chunks(), lambda: os.close(fd))

    def head(self, key: str) -> ObjectInfo:
        validate_key(key)
        with parent_dir(self.root, key) as (dir_fd, name):
            fd = self._open_file(dir_fd, name, key, _READ)
            try:
                return _info(key, os.fstat(fd), _read_meta(dir_fd, name))
            finally:
                os.close(fd)

    def delete(self, key: str) -> None:
        validate_key(key)
        with parent_dir(self.root, key) as (dir_fd, name):
            st = refuse_symlink(dir_fd, name, key)
            if st is None or not stat.S_ISREG(st.st_mode):
                raise ObjectNotFound(f"no object {key!r}")
            os.unlink(name, dir_fd=dir_fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_meta_name(name), dir_fd=dir_fd)
        prune_empty_dirs(self.root, key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        validate_prefix(prefix)
        *dirs, partial = prefix.split("/")
        try:
            fds = open_dirs(self.root, dirs, prefix, create=False)
        except (ObjectNotFound, KeyConflict):
            return []
        base = "".join(d + "/" for d in dirs)
        try:
            found = [
                _info(key, st, _read_meta(parent, name))
                for key, name, st, parent in walk_files(fds[-1], base, partial)
                if is_valid_key(key)
            ]
        finally:
            for fd in fds:
                os.close(fd)
        return sorted(found, key=lambda info: info.key)

    def append(self, key: str, offset: int, data: bytes, content_type: str | None = None) -> int:
        validate_key(key)
        content_type = check_content_type(content_type)
        data = bytes(data)
        if offset < 0:
            raise InvalidArgument(f"append offset {offset} is negative")
        if offset + len(data) > self.max_object_size:
            raise ObjectTooLarge(key, self.max_object_size)
        with contextlib.ExitStack() as stack:
            try:
                dir_fd, name = stack.enter_context(parent_dir(self.root, key, offset == 0))
            except ObjectNotFound:
                raise OffsetMismatch(key, offset, 0) from None
            with _space_errors(key):
                return self._append_at(dir_fd, name, key, offset, data, content_type)

    def _append_at(
        self, dir_fd: int, name: str, key: str, offset: int, data: bytes, content_type: str
    ) -> int:
        fd = -1
        if offset == 0:
            with contextlib.suppress(FileExistsError):
                fd = self._open_file(dir_fd, name, key, _APPEND | os.O_CREAT | os.O_EXCL)
            if fd >= 0:
                try:  # no checksum in the metadata: the content is going to grow
                    _create_meta(dir_fd, name, fd, content_type)
                except BaseException:
                    os.close(fd)
                    raise
        if fd < 0:
            try:
                fd = self._open_file(dir_fd, name, key, _APPEND)
            except ObjectNotFound:
                raise OffsetMismatch(key, offset, 0) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if offset == size:
                self._write_whole(fd, key, size, data)
                return size + len(data)
            if offset + len(data) <= size and os.pread(fd, len(data), offset) == data:
                return size
            raise OffsetMismatch(key, offset, size)
        finally:
            os.close(fd)

    @staticmethod
    def _write_whole(fd: int, key: str, size: int, data: bytes) -> None:
        """Write `data` at `size`, or nothing: a write the disk refused halfway is cut
        back, so the object keeps its old size and the same append can be sent again."""
        view = memoryview(data)
        try:
            while view:
                view = view[os.pwrite(fd, view, size + len(data) - len(view)) :]
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            if exc.errno in _FULL:
                raise StoreFull(f"append to {key!r} refused: {exc.strerror}") from exc
            raise

    def compact(self, key: str) -> ObjectInfo:
        validate_key(key)
        with parent_dir(self.root, key) as (dir_fd, name):
            fd = self._open_file(dir_fd, name, key, _READ)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                st = os.fstat(fd)
                meta = _read_meta(dir_fd, name)
                info = _info(key, st, meta)
                if info.sha256 is not None:
                    return info
                digest = hashlib.sha256()
                for pos in range(0, st.st_size, CHUNK_SIZE):
                    digest.update(os.pread(fd, CHUNK_SIZE, pos))
                meta = {
                    "ino": st.st_ino,
                    "size": st.st_size,
                    "sha256": digest.hexdigest(),
                    "content_type": info.content_type,
                }
                _write_meta(dir_fd, name, meta)
                return _info(key, st, meta)
            finally:
                os.close(fd)
