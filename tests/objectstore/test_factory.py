"""`open_store(url)` picks the backend from the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from otto.objectstore import (
    FilesystemStore,
    HttpObjectStore,
    InvalidArgument,
    S3Store,
    default_root,
    open_store,
)

from .conftest import HttpServer


def test_paths_and_file_urls(tmp_path: Path) -> None:
    for url in (str(tmp_path / "a"), f"file://{tmp_path}/a", tmp_path / "a"):
        store = open_store(url)
        assert isinstance(store, FilesystemStore) and store.root == tmp_path / "a"
    store = open_store(f"file://{tmp_path}/with%20space")
    assert isinstance(store, FilesystemStore) and store.root == tmp_path / "with space"
    with pytest.raises(InvalidArgument):
        open_store("file://otherhost/x")
    with pytest.raises(InvalidArgument):
        open_store("ftp://example.com/x")


def test_default_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTTO_HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home" / "objects"
    store = open_store()
    assert isinstance(store, FilesystemStore) and store.root == tmp_path / "home" / "objects"


def test_s3_url(moto_endpoint: str, make_bucket: object, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = make_bucket()  # type: ignore[operator]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    store = open_store(f"s3://{bucket}/runs/objects?endpoint={moto_endpoint}&region=us-east-1")
    assert isinstance(store, S3Store) and store.prefix == "runs/objects/"
    store.put("k", b"through the URL")
    with_keys = open_store(
        f"s3://{bucket}?endpoint={moto_endpoint}&region=us-east-1"
        "&access_key=testing&secret_key=testing"
    )
    assert with_keys.get("runs/objects/k") == b"through the URL"
    with pytest.raises(InvalidArgument):
        open_store("s3:///no-bucket")


def test_http_url(http_server: HttpServer, tmp_path: Path) -> None:
    http_server.serve(FilesystemStore(tmp_path / "objects"), token="t0k")
    store = open_store(f"{http_server.url}/?token=t0k")
    assert isinstance(store, HttpObjectStore)
    store.put("via/http", b"yes")
    assert FilesystemStore(tmp_path / "objects").get("via/http") == b"yes"
    store.close()
