"""`open_store(url)`: a store from the URL in the configuration or an invocation.

- `file:///abs/path` or a plain path → `FilesystemStore`
- `s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1` → `S3Store`;
  credentials from `access_key`/`secret_key` query parameters, else boto3's usual
  sources (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, profiles, ...)
- `http://host:port` or `https://...` → `HttpObjectStore` (the server's API);
  `token=` its API token, `known_up=1` the server is known to exist (it handed out
  the work): a request that cannot connect is retried from the first (a restart);
  `also=URL,URL` other servers sharing the same store (replicas), where a request that
  cannot connect goes next
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from otto.objectstore.base import DEFAULT_MAX_OBJECT_SIZE, ObjectStore
from otto.objectstore.errors import InvalidArgument
from otto.objectstore.fs import FilesystemStore


def default_root() -> Path:
    """`$OTTO_HOME/objects` (OTTO_HOME defaults to `.otto` in the working directory)."""
    return Path(os.environ.get("OTTO_HOME", ".otto")) / "objects"


def open_store(
    url: str | Path | None = None,
    max_object_size: int = DEFAULT_MAX_OBJECT_SIZE,
    token: str | None = None,
) -> ObjectStore:
    if url is None or url == "":
        return FilesystemStore(default_root(), max_object_size)
    if isinstance(url, Path) or "://" not in url:
        return FilesystemStore(Path(url), max_object_size)
    parts = urlsplit(url)
    query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidArgument(f"file URL {url!r} names a host; use file:///absolute/path")
        return FilesystemStore(Path(unquote(parts.path)), max_object_size)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise InvalidArgument(f"S3 URL {url!r} has no bucket")
        from otto.objectstore.s3 import S3Store

        return S3Store(
            bucket=parts.netloc,
            endpoint_url=query.get("endpoint"),
            region=query.get("region"),
            access_key=query.get("access_key"),
            secret_key=query.get("secret_key"),
            prefix=unquote(parts.path).strip("/"),
            max_object_size=max_object_size,
        )
    if parts.scheme in ("http", "https"):
        base = f"{parts.scheme}://{parts.netloc}{parts.path}"
        known_up = query.get("known_up") == "1"
        others = [u for u in query.get("also", "").split(",") if u]
        from otto.objectstore.client import HttpObjectStore

        return HttpObjectStore(
            base, token=token or query.get("token"), known_up=known_up, others=others
        )
    raise InvalidArgument(f"unknown object store URL scheme {parts.scheme!r} in {url!r}")
