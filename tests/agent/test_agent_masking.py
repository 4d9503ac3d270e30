"""The masker on its own: the forms of a secret, and streams cut anywhere."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from otto.agent.masking import MASK, Masker, secret_forms

SECRETS = ["hunter2-Ab+/=&?x", 'quote"back\\slash', "ünïcödé-pässwörd"]


def feed(masker: Masker, data: bytes, cuts: list[int]) -> bytes:
    stream = masker.stream()
    out = []
    last = 0
    for cut in sorted({c % (len(data) + 1) for c in cuts}):
        out.append(stream.feed(data[last:cut]))
        last = cut
    out.append(stream.feed(data[last:]))
    out.append(stream.finish())
    return b"".join(out)


def test_forms_cover_raw_base64_url_and_json() -> None:
    forms = secret_forms('pa ss/"wörd')
    assert b'pa ss/"w\xc3\xb6rd' in forms
    assert b"pa%20ss%2F%22w%C3%B6rd" in forms
    assert b'pa ss/\\"w\\u00f6rd' in forms
    assert base64.b64encode('pa ss/"wörd'.encode())[:12] in {f[:12] for f in forms}


def test_base64_at_any_alignment_is_masked() -> None:
    masker = Masker(["correct horse battery"])
    for prefix in (b"", b"a", b"ab", b"abc"):
        encoded = base64.b64encode(prefix + b"correct horse battery" + b"!")
        assert b"****" in masker.mask(encoded)


def test_short_secrets_mask_only_their_raw_form() -> None:
    assert secret_forms("ab") == {b"ab"}
    assert secret_forms("") == set()


@given(
    before=st.binary(max_size=40),
    after=st.binary(max_size=40),
    which=st.sampled_from(SECRETS),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=12),
)
def test_a_stream_cut_anywhere_never_shows_a_secret(
    before: bytes, after: bytes, which: str, cuts: list[int]
) -> None:
    masker = Masker(SECRETS)
    data = before + which.encode() + after + base64.b64encode(which.encode())
    out = feed(masker, data, cuts)
    for secret in SECRETS:
        assert secret.encode() not in out
    assert out == masker.mask(data)
    assert MASK in out


def test_without_secrets_the_stream_is_untouched() -> None:
    masker = Masker([])
    data = bytes(range(256)) * 10
    assert feed(masker, data, [7, 300, 2000]) == data


def test_only_a_possible_secret_prefix_is_held_back() -> None:
    stream = Masker(["hunter2hunter2"]).stream()
    assert stream.feed(b"hello hun") == b"hello "
    assert stream.feed(b"gry\n") == b"hungry\n"
    assert stream.feed(b"xhunter2hunter2y") == b"x****y"
