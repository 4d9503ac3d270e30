"""The HTTP API itself, over raw HTTP: encoded traversal, ranges, limits, error shapes."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from otto.httpclient import Unauthorized
from otto.objectstore import FilesystemStore, HttpObjectStore, InvalidKey, ObjectStoreError

from .conftest import HttpServer


@pytest.fixture
def served(http_server: HttpServer, tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    root = tmp_path / "objects"
    http_server.serve(FilesystemStore(root, max_object_size=1000))
    with httpx.Client(base_url=http_server.url, timeout=10) as client:
        yield client, root


def raw(url: str, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """Send `path` exactly as written (no client-side normalisation or re-encoding)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


TRAVERSALS = [
    "/v1/objects/%2e%2e/escape",
    "/v1/objects/%2E%2E%2Fescape",
    "/v1/objects/..%2fescape",
    "/v1/objects/a/%2e%2e/%2e%2e/escape",
    "/v1/objects/../escape",
    "/v1/objects/a/../../escape",
    "/v1/objects/%252e%252e/escape",
    "/v1/objects/%2fetc%2fpasswd",
    "/v1/objects//etc/passwd",
    "/v1/objects/a%5c..%5cescape",
    "/v1/objects/a%00b",
    "/v1/objects/a%0ab",
    "/v1/objects/" + "k" * 1100,
    "/v1/objects/",
]


@pytest.mark.parametrize("path", TRAVERSALS)
@pytest.mark.parametrize("method", ["GET", "PUT", "HEAD", "DELETE"])
def test_encoded_traversal_is_a_400(
    served: tuple[httpx.Client, Path], http_server: HttpServer, path: str, method: str
) -> None:
    _, root = served
    status, body = raw(http_server.url, method, path, b"evil" if method == "PUT" else None)
    assert status == 400
    if method != "HEAD":
        assert json.loads(body)["error"]["code"] == "invalid_key"
    assert not (root.parent / "escape").exists()
    assert not root.exists() or not any(root.iterdir())


def test_put_get_head_and_listing(served: tuple[httpx.Client, Path]) -> None:
    client, _ = served
    r = client.put(
        "/v1/objects/p/a%20b.txt", content=b"spaced", headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 200 and r.json()["key"] == "p/a b.txt"
    r = client.get("/v1/objects/p/a b.txt")
    assert (r.status_code, r.content, r.headers["content-type"]) == (200, b"spaced", "text/plain")
    assert r.headers["x-otto-sha256"] == r.headers["etag"].strip('"')
    r = client.head("/v1/objects/p/a b.txt")
    assert (r.status_code, r.headers["content-length"]) == (200, "6")
    listing = client.get("/v1/objects", params={"prefix": "p/"}).json()
    assert [set(item) for item in listing] == [
        {"key", "size", "content_type", "sha256", "modified"}
    ]
    assert listing[0]["key"] == "p/a b.txt" and listing[0]["size"] == 6
    r = client.get("/v1/objects", params={"prefix": "../"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_key"
    assert client.delete("/v1/objects/p/a b.txt").status_code == 204
    r = client.get("/v1/objects/p/a b.txt")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert client.head("/v1/objects/p/a b.txt").headers["x-otto-error"] == "not_found"


@pytest.mark.parametrize(
    ("header", "status", "content", "content_range"),
    [
        ("bytes=0-3", 206, b"0123", "bytes 0-3/10"),
        ("bytes=4-", 206, b"456789", "bytes 4-9/10"),
        ("bytes=-3", 206, b"789", "bytes 7-9/10"),
        ("bytes=8-100", 206, b"89", "bytes 8-9/10"),
        ("bytes=-50", 206, b"0123456789", "bytes 0-9/10"),
        ("bytes=10-", 416, None, "bytes */10"),
        ("bytes=-0", 416, None, "bytes */10"),
        ("bytes=5-2", 416, None, None),
        ("bytes=x-y", 416, None, None),
        ("bytes=0-1,3-4", 200, b"0123456789", None),  # several ranges: ignored
        ("lines=1-2", 200, b"0123456789", None),
    ],
)
def test_ranges(
    served: tuple[httpx.Client, Path],
    header: str,
    status: int,
    content: bytes | None,
    content_range: str | None,
) -> None:
    client, _ = served
    client.put("/v1/objects/r", content=b"0123456789")
    r = client.get("/v1/objects/r", headers={"Range": header})
    assert r.status_code == status
    if content is not None:
        assert r.content == content
    else:
        assert r.json()["error"]["code"] == "range_not_satisfiable"
    assert r.headers.get("content-range") == content_range


def test_size_limits_are_413(served: tuple[httpx.Client, Path]) -> None:
    client, _ = served
    client.put("/v1/objects/small", content=b"ok")
    r = client.put("/v1/objects/small", content=b"x" * 1001)  # declared Content-Length
    assert r.status_code == 413 and r.json()["error"] == {
        "code": "too_large",
        "message": "object 'small' would exceed the size limit of 1000 bytes",
        "limit": 1000,
    }
    r = client.put("/v1/objects/small", content=iter([b"x" * 600, b"x" * 600]))  # chunked
    assert r.status_code == 413
    r = client.put("/v1/objects/log", content=b"x" * 1001, headers={"X-Otto-Append-Offset": "0"})
    assert r.status_code == 413
    assert client.get("/v1/objects/small").content == b"ok"
    assert client.get("/v1/objects/log").status_code == 404


def test_append_convention(served: tuple[httpx.Client, Path]) -> None:
    client, _ = served
    put = lambda offset, data: client.put(  # noqa: E731
        "/v1/objects/l/step.log", content=data, headers={"X-Otto-Append-Offset": offset}
    )
    assert put("0", b"hello ").json() == {"key": "l/step.log", "size": 6}
    assert put("6", b"world").json() == {"key": "l/step.log", "size": 11}
    assert put("6", b"world").json()["size"] == 11  # a resent chunk
    r = put("3", b"nope")
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "offset_mismatch"
    assert r.json()["error"]["current_size"] == 11
    for bad in ("-1", "x", "1.5", ""):
        r = put(bad, b"?")
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_argument"
    assert client.get("/v1/objects/l/step.log").content == b"hello world"


def test_conflict_and_unknown_post(served: tuple[httpx.Client, Path]) -> None:
    client, _ = served
    client.put("/v1/objects/a/b", content=b"1")
    r = client.put("/v1/objects/a", content=b"2")
    assert r.status_code == 409 and r.json()["error"]["code"] == "key_conflict"
    r = client.post("/v1/objects/a/b")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_argument"
    r = client.post("/v1/objects/a/b", params={"action": "compact"})
    assert r.status_code == 200 and r.json()["size"] == 1
    r = client.put("/v1/objects/c", content=b"1", headers={"Content-Type": "bad\x7ftype"})
    assert r.status_code == 400


def test_token(http_server: HttpServer, tmp_path: Path) -> None:
    http_server.serve(FilesystemStore(tmp_path / "objects"), token="s3cret")
    r = httpx.put(f"{http_server.url}/v1/objects/k", content=b"v")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert httpx.get(f"{http_server.url}/v1/objects").status_code == 401
    with pytest.raises(ObjectStoreError):
        HttpObjectStore(http_server.url, token="wrong").put("k", b"v")
    # A refused token is the one `Unauthorized` every client of the server raises.
    with pytest.raises(Unauthorized, match=r"^HEAD 'k': HTTP 401$"):
        HttpObjectStore(http_server.url, token="wrong").head("k")
    with pytest.raises(Unauthorized, match=r"^GET 'k': missing or wrong bearer token$"):
        HttpObjectStore(http_server.url).get("k")
    store = HttpObjectStore(http_server.url, token="s3cret")
    store.put("k", b"v")
    assert store.get("k") == b"v"
    with pytest.raises(InvalidKey):
        store.get("../k")
    store.close()
