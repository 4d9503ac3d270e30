"""The credential store on both backends: values encrypted at rest, scopes (the
project's own first, then the global one), denial, key rotation, the key file."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from otto.credentials import Credentials
from otto.credentials.keys import ENV_KEY, CredentialKeyError, KeyRing
from otto.psm import open_store


@pytest.fixture
def store(store_url: str) -> Any:
    opened = open_store(store_url)
    yield opened
    opened.close()


def grant(creds: Credentials, project: str | None, names: list[str], untrusted: bool = False):
    return creds.store.write(lambda tx: creds.grant(tx, project, names, untrusted))


def test_values_are_encrypted_scoped_and_denied(store: Any, tmp_path: Path) -> None:
    creds = Credentials(store, KeyRing(tmp_path, environ={}))
    creds.set("npm", "global-value", None, "alice@host")
    creds.set("npm", "acme-value", "acme", "bob@host")
    creds.set("deploy", "deploy-value", "acme", "bob@host")
    stored = store.read(lambda tx: tx.all("SELECT ciphertext FROM credentials"))
    assert all("value" not in row["ciphertext"] for row in stored)
    assert grant(creds, "acme", ["npm", "deploy"]).values == {
        "npm": "acme-value",
        "deploy": "deploy-value",
    }
    assert grant(creds, "other", ["npm"]).values == {"npm": "global-value"}
    assert grant(creds, None, ["npm"]).values == {"npm": "global-value"}
    denied = grant(creds, "other", ["npm", "deploy"])
    assert (denied.values, denied.denied) == (
        {},
        "credential_denied: deploy (none for project other)",
    )
    forked = grant(creds, "acme", ["npm"], untrusted=True)
    assert forked.values == {} and forked.denied.startswith("credential_denied: a fork's")
    assert grant(creds, "acme", []).values == {}
    assert [(c["name"], c["project"], c["set_by"]) for c in creds.list()] == [
        ("deploy", "acme", "bob@host"),
        ("npm", None, "alice@host"),
        ("npm", "acme", "bob@host"),
    ]
    assert creds.remove("npm", "acme") and not creds.remove("npm", "acme")
    assert grant(creds, "acme", ["npm"]).values == {"npm": "global-value"}


def test_rotating_the_key_file(store: Any, tmp_path: Path) -> None:
    keys = KeyRing(tmp_path, environ={})
    creds = Credentials(store, keys)
    creds.set("npm", "the-value", None, "alice")
    key_file = tmp_path / "credentials.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    old = key_file.read_text()
    assert creds.rotate_key() == 1
    assert key_file.read_text() != old and len(key_file.read_text().split()) == 1
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert grant(creds, None, ["npm"]).values == {"npm": "the-value"}
    key_file.write_text(old)  # the old key alone no longer opens it
    assert grant(creds, None, ["npm"]).denied == (
        "credential_denied: npm cannot be decrypted with the current key"
    )


def test_a_key_from_the_environment(store: Any, tmp_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    creds = Credentials(store, KeyRing(tmp_path, environ={ENV_KEY: old}))
    creds.set("npm", "the-value", None, "alice")
    assert not (tmp_path / "credentials.key").exists()
    rotated = Credentials(store, KeyRing(tmp_path, environ={ENV_KEY: f"{new},{old}"}))
    assert rotated.rotate_key() == 1
    alone = Credentials(store, KeyRing(tmp_path, environ={ENV_KEY: new}))
    assert grant(alone, None, ["npm"]).values == {"npm": "the-value"}
    with pytest.raises(CredentialKeyError, match=f"{ENV_KEY}: not a Fernet key"):
        KeyRing(tmp_path, environ={ENV_KEY: "short"}).keys()
