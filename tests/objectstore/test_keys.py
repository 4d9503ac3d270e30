"""Key rules: no key can escape the store, in any form, on any backend."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otto.objectstore import InvalidKey, ObjectStore, validate_key, validate_prefix

BAD_KEYS = [
    "",
    "..",
    ".",
    "../x",
    "a/../../b",
    "a/./b",
    "a/..",
    "/abs",
    "/etc/passwd",
    "a//b",
    "a/",
    "a\\b",
    "..\\..\\x",
    "a\x00b",
    "nul\x00",
    "tab\there",
    "new\nline",
    "del\x7f",
    "c1\x85",
    "%2e%2e/x",
    "a/%2E%2E/b",
    "..%2fx",
    "a%2Fb",
    "%252e%252e/x",
    "a%00b",
    "k" * 1025,
    "/".join(["s" * 200] * 6),
    "x" * 241,
    ".otto-meta.x",
    "a/.otto-tmp.123",
    "\udc80",
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidKey):
        validate_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "p/c/step.log",
        "step-libraries/sh/1.0.tar.gz",
        "a b/ü/日本",
        "...",
        "a..b",
        "100%",
        "x" * 240,
    ],
)
def test_good_keys(key: str) -> None:
    assert validate_key(key) == key


def test_prefixes() -> None:
    for good in ["", "a", "a/", "a/b", "a/b/", "a/.", "a/.."]:
        assert validate_prefix(good) == good  # a partial last segment only filters
    for bad in ["/", "/a", "../", "a/../", "a//", "./a", "%2e%2e/", "a\\", "a\x00", ".otto"]:
        with pytest.raises(InvalidKey):
            validate_prefix(bad)
    with pytest.raises(InvalidKey):
        validate_key(None)


@given(st.text(alphabet=st.sampled_from(list("ab./\\%2e\x00")), max_size=12))
def test_valid_keys_stay_under_the_root(key: str) -> None:
    try:
        validate_key(key)
    except InvalidKey:
        return
    root = "/store/root"
    assert os.path.normpath(os.path.join(root, key)).startswith(root + "/")
    assert os.path.normpath(key) == key


@pytest.mark.parametrize(
    "key", ["../escape", "a/../../escape", "/tmp/escape", "a\\b", "a\x00b", "k" * 2000]
)
def test_every_operation_refuses_bad_keys(store: ObjectStore, tmp_path: Path, key: str) -> None:
    calls = [
        lambda: store.put(key, b"x"),
        lambda: store.get(key),
        lambda: store.head(key),
        lambda: store.delete(key),
        lambda: store.append(key, 0, b"x"),
        lambda: store.get_range(key, 0, 1),
        lambda: store.compact(key),
    ]
    for call in calls:
        with pytest.raises(InvalidKey):
            call()
    with pytest.raises(InvalidKey):
        store.list("../")
    assert store.list() == []
    assert not (tmp_path / "escape").exists()
