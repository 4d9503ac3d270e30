"""A store that cannot be reached fails like any other store failure, never with httpx's."""

from __future__ import annotations

import pytest

from otto.objectstore import HttpObjectStore, ObjectStoreError, StoreUnavailable
from serverkit import free_port


def test_an_unreachable_http_store_raises_store_unavailable() -> None:
    store = HttpObjectStore(f"http://127.0.0.1:{free_port()}", connect_retries=0)
    with pytest.raises(StoreUnavailable) as caught:
        store.get("p/c/s.log")
    assert isinstance(caught.value, ObjectStoreError)
    assert caught.value.status == 503
    with pytest.raises(StoreUnavailable):
        store.append("p/c/s.log", 0, b"x")
    store.close()
