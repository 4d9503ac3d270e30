"""Range reads: half-open [start, end), clipped to the object's size."""

from __future__ import annotations

import pytest

from otto.objectstore import InvalidArgument, ObjectStore

DATA = bytes(range(256)) * 40  # 10 240 bytes


@pytest.fixture
def filled(store: ObjectStore) -> ObjectStore:
    store.put("r/data", DATA)
    return store


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 1), (0, 10), (5, 6), (100, 5000), (10_000, 10_240), (0, None), (10_239, None)],
)
def test_ranges(filled: ObjectStore, start: int, end: int | None) -> None:
    assert filled.get_range("r/data", start, end) == DATA[start:end]


def test_ranges_past_the_end_are_clipped(filled: ObjectStore) -> None:
    assert filled.get_range("r/data", 10_000, 99_999) == DATA[10_000:]
    assert filled.get_range("r/data", 10_240, None) == b""
    assert filled.get_range("r/data", 50_000, 60_000) == b""
    assert filled.get_range("r/data", 7, 7) == b""


def test_bad_ranges(filled: ObjectStore) -> None:
    with pytest.raises(InvalidArgument):
        filled.get_range("r/data", -1, 5)
    with pytest.raises(InvalidArgument):
        filled.get_range("r/data", 9, 3)


def test_open_a_range_reports_the_whole_object(filled: ObjectStore) -> None:
    with filled.open("r/data", 1000, 3000) as stream:
        assert stream.info.size == len(DATA)
        assert b"".join(stream) == DATA[1000:3000]


def test_ranges_across_appended_chunks(store: ObjectStore) -> None:
    pieces = [bytes([65 + i]) * (100 + i) for i in range(10)]
    offset = 0
    for piece in pieces:
        offset = store.append("r/log", offset, piece)
    whole = b"".join(pieces)
    assert store.get("r/log") == whole
    for start, end in [(0, 50), (99, 101), (150, 900), (250, None), (len(whole) - 1, None)]:
        assert store.get_range("r/log", start, end) == whole[start:end]
