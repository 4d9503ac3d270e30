"""The credential store: values a stage asks for by name, encrypted at rest.

Each credential is a name with a scope (a project, or every project when none), its
value encrypted with Fernet (`cryptography`) under a key kept outside the database
(`keys.py`: `OTTO_CREDENTIALS_KEY`, else `$OTTO_HOME/credentials.key`), who set it and
when. A copy of the database reveals no value; nothing here logs or returns one except
`grant`, which hands a claimed context the values its stage asked for (project-scoped
first, then global) to pass on to the orchestrator that holds its lease.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from otto.credentials.keys import KeyRing
from otto.model import CREDENTIAL_NAME
from otto.psm.records import CREDENTIAL_DENIED as DENIED
from otto.psm.records import NO_GRANT, Grant
from otto.psm.store.base import Store, Tx

NAME = CREDENTIAL_NAME
GLOBAL = ""  # the scope column of a credential every project may use


class Credentials:
    """The store's credentials table, read and written through `store`."""

    def __init__(self, store: Store, keys: KeyRing) -> None:
        self.store, self.keys = store, keys

    def set(self, name: str, value: str, project: str | None, by: str) -> dict[str, Any]:
        """Store (or replace) a credential; its listing entry, without the value."""
        ciphertext = self.keys.fernet().encrypt(value.encode()).decode()
        now = time.time()

        def work(tx: Tx) -> None:
            scope = project or GLOBAL
            tx.run("DELETE FROM credentials WHERE name = ? AND scope = ?", name, scope)
            tx.run(
                "INSERT INTO credentials (name, scope, ciphertext, set_by, set_at)"
                " VALUES (?, ?, ?, ?, ?)",
                name,
                scope,
                ciphertext,
                by,
                now,
            )

        self.store.write(work)
        return {"name": name, "project": project or None, "set_by": by, "set_at": now}

    def list(self) -> list[dict[str, Any]]:
        """Every credential's name, scope, who set it and when: never a value."""
        rows = self.store.read(
            lambda tx: tx.all(
                "SELECT name, scope, set_by, set_at FROM credentials ORDER BY name, scope"
            )
        )
        return [
            {
                "name": r["name"],
                "project": r["scope"] or None,
                "set_by": r["set_by"],
                "set_at": r["set_at"],
            }
            for r in rows
        ]

    def remove(self, name: str, project: str | None) -> bool:
        """Delete one credential (of `project`, else the global one); whether it was."""

        def work(tx: Tx) -> bool:
            scope = project or GLOBAL
            found = tx.one("SELECT name FROM credentials WHERE name = ? AND scope = ?", name, scope)
            tx.run("DELETE FROM credentials WHERE name = ? AND scope = ?", name, scope)
            return found is not None

        return self.store.write(work)

    def grant(self, tx: Tx, project: str | None, names: Sequence[str], untrusted: bool) -> Grant:
        """The values of `names` for a context of `project`'s run, read in the claim's own
        transaction; any name missing (or not scoped to the project) denies them all, and
        so does an untrusted run (a fork's pull request) asking for any."""
        if not names:
            return NO_GRANT
        if untrusted:
            return Grant(denied=f"{DENIED}: a fork's pull request gets no credentials")
        found: dict[str, dict[str, str]] = {}
        for name in dict.fromkeys(names):
            rows = tx.all(
                "SELECT scope, ciphertext FROM credentials WHERE name = ? AND scope IN (?, ?)",
                name,
                GLOBAL,
                project or GLOBAL,
            )
            found[name] = {r["scope"]: r["ciphertext"] for r in rows}
        missing = [n for n, by_scope in found.items() if not by_scope]
        if missing:
            where = f"project {project}" if project else "a run without a project"
            return Grant(denied=f"{DENIED}: {', '.join(missing)} (none for {where})")
        fernet = self.keys.fernet()
        values: dict[str, str] = {}
        for name, by_scope in found.items():
            token = by_scope.get(project or GLOBAL) or by_scope[GLOBAL]
            try:
                values[name] = fernet.decrypt(token.encode()).decode()
            except InvalidToken:
                return Grant(denied=f"{DENIED}: {name} cannot be decrypted with the current key")
        return Grant(values=values)

    def rotate_key(self) -> int:
        """A new key for every value; how many were encrypted again. With the key file: a
        fresh key is put first, every value encrypted under it, then the old keys are
        dropped. With `OTTO_CREDENTIALS_KEY`: every value is encrypted under its first key
        (put the new one first, rotate, then drop the old one)."""
        if self.keys.from_environment:
            return self._encrypt_again()
        new = Fernet.generate_key().decode()
        self.keys.write([new, *self.keys.keys()])
        count = self._encrypt_again()
        self.keys.write([new])
        return count

    def _encrypt_again(self) -> int:
        """Encrypt every value again under the key ring's first key; how many."""
        fernet = self.keys.fernet()

        def work(tx: Tx) -> int:
            rows = tx.all("SELECT name, scope, ciphertext FROM credentials")
            for r in rows:
                token = fernet.rotate(r["ciphertext"].encode()).decode()
                tx.run(
                    "UPDATE credentials SET ciphertext = ? WHERE name = ? AND scope = ?",
                    token,
                    r["name"],
                    r["scope"],
                )
            return len(rows)

        return self.store.write(work)


def rotate_key(home: Path, db_url: str) -> int:
    """`otto credentials rotate-key`: every value of the server's store (`db_url`) under a
    new key (`home`'s key file, or `OTTO_CREDENTIALS_KEY`'s first); how many."""
    from otto.psm import open_store

    store = open_store(db_url)
    try:
        return Credentials(store, KeyRing(home)).rotate_key()
    finally:
        store.close()
