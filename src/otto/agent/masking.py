"""Masking secrets in step output before it is stored.

Each secret is masked in the forms it commonly takes in logs: as is, base64
(standard and URL-safe, at any alignment inside a longer encoded text),
URL-encoded and JSON-escaped. A stream masker holds back only the output
tail that could still turn into a secret with the next chunk, so a secret
split across chunks is masked too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

MASK = b"****"
# Derived forms shorter than this would mask too much unrelated output.
MIN_DERIVED_LENGTH = 6


def secret_forms(secret: str) -> set[bytes]:
    """The byte strings under which `secret` may appear in a log."""
    raw = secret.encode()
    if not raw:
        return set()
    forms = {raw}
    derived = {
        quote(secret, safe="").encode(),
        quote(secret).encode(),
        quote_plus(secret).encode(),
        json.dumps(secret)[1:-1].encode(),
        json.dumps(secret, ensure_ascii=False)[1:-1].encode(),
    }
    for shift in range(3):
        # The characters of base64(prefix + secret + suffix) that depend on the secret alone.
        skip = (8 * shift + 5) // 6
        end = (8 * (shift + len(raw))) // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            derived.add(encode(b"\0" * shift + raw)[skip:end])
    forms |= {f for f in derived if len(f) >= MIN_DERIVED_LENGTH}
    return forms


_SECRET_PARAMETERS = ("secret", "token", "password", "signature")


def url_secrets(url: str) -> list[str]:
    """Credentials inside a URL (its password, `secret_key=`/`token=` query values)."""
    if "@" not in url and "?" not in url:
        return []  # e.g. a path: nothing to parse
    try:
        parts = urlsplit(url)
        found = [parts.password] if parts.password else []
    except ValueError:
        return []
    for name, value in parse_qsl(parts.query):
        if value and any(word in name.lower() for word in _SECRET_PARAMETERS):
            found.append(value)
    return found


class Masker:
    """Masks every form of a set of secrets; `stream()` gives a chunk-safe masker."""

    def __init__(self, secrets: Iterable[str] = (), exact: Iterable[str] = ()) -> None:
        self.forms: list[bytes] = []
        self.add(secrets, exact)

    def add(self, secrets: Iterable[str] = (), exact: Iterable[str] = ()) -> None:
        """More secrets (every form) and exact strings to mask from now on."""
        forms = set(self.forms)
        for secret in secrets:
            forms |= secret_forms(secret)
        forms |= {s.encode() for s in exact if s}
        # Longer forms first: a form may contain a shorter one.
        self.forms = sorted(forms, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.forms)

    def mask(self, data: bytes) -> bytes:
        for form in self.forms:
            data = data.replace(form, MASK)
        return data

    def mask_text(self, text: str) -> str:
        return self.mask(text.encode()).decode(errors="replace") if self.forms else text

    def stream(self) -> StreamMasker:
        return StreamMasker(self)


class StreamMasker:
    """Masks a byte stream fed in arbitrary chunks."""

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._carry = b""

    def feed(self, data: bytes) -> bytes:
        """Masked output that is safe to emit now; a possible secret prefix is held back."""
        if not self._masker.forms:
            return data
        buf = self._masker.mask(self._carry + data if self._carry else data)
        keep = self._held_back(buf)
        if keep:
            self._carry = buf[-keep:]
            return buf[:-keep]
        self._carry = b""
        return buf

    def finish(self) -> bytes:
        """Whatever was held back, now that the stream has ended."""
        rest, self._carry = self._carry, b""
        return rest

    def _held_back(self, buf: bytes) -> int:
        """The length of the longest tail of `buf` that is a proper prefix of a form."""
        longest = 0
        for form in self._masker.forms:
            window = min(len(form) - 1, len(buf))
            if window <= longest:
                continue
            tail = buf[len(buf) - window :]
            first = form[0]
            i = tail.find(first)
            while i != -1 and window - i > longest:
                if form.startswith(tail[i:]):
                    longest = window - i
                    break
                i = tail.find(first, i + 1)
        return longest
