"""The key the credential store encrypts with, kept outside the database.

`OTTO_CREDENTIALS_KEY` (one or more Fernet keys, comma-separated, the first used to
encrypt) wins; else `$OTTO_HOME/credentials.key` (one key a line, likewise), made with
a fresh key, mode 0600, the first time it is needed. The file is read at each use, so
`otto credentials rotate-key` takes effect in a running server at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet

ENV_KEY = "OTTO_CREDENTIALS_KEY"
KEY_FILE = "credentials.key"


class CredentialKeyError(ValueError):
    """A key that cannot be used; the message says where it came from."""


class KeyRing:
    """The keys from the environment, else from the key file under `home`."""

    def __init__(self, home: Path, environ: dict[str, str] | None = None) -> None:
        self.path = home / KEY_FILE
        self.given = (environ if environ is not None else dict(os.environ)).get(ENV_KEY, "")

    @property
    def from_environment(self) -> bool:
        return bool(self.given.strip())

    def keys(self) -> list[str]:
        """The keys, the encrypting one first (the key file made if need be)."""
        if self.from_environment:
            return _split(self.given, ENV_KEY)
        if not self.path.exists():
            self.write([Fernet.generate_key().decode()])
        return _split(self.path.read_text(encoding="ascii"), str(self.path))

    def fernet(self) -> MultiFernet:
        return MultiFernet([Fernet(key) for key in self.keys()])

    def write(self, keys: list[str]) -> None:
        """Replace the key file atomically; it is never readable by others (0600)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        draft = self.path.with_name(f".{KEY_FILE}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write("".join(f"{key}\n" for key in keys))
            file.flush()
            os.fsync(file.fileno())
        os.replace(draft, self.path)


def _split(text: str, where: str) -> list[str]:
    keys = [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]
    if not keys:
        raise CredentialKeyError(f"{where}: no credentials key")
    for key in keys:
        try:
            Fernet(key)
        except ValueError:
            message = f"{where}: not a Fernet key (32 url-safe base64-encoded bytes)"
            raise CredentialKeyError(message) from None
    return keys
