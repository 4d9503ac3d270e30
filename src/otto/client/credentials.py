"""`otto credentials set|list|rm`: the server's credential store, over its API; and
`otto credentials rotate-key`, run where the server keeps its state."""

from __future__ import annotations

import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

from otto.client.commands import _dump, _who
from otto.client.errors import UsageProblem
from otto.client.ottoclient import OttoClient
from otto.client.terminal import Terminal, table


def read_value(file: str | None) -> str:
    """A credential's value: the file's content, else stdin's (never a command-line
    argument, which other users can see in the process list); one trailing newline
    (as `echo` writes) is dropped."""
    try:
        text = Path(file).read_text(encoding="utf-8") if file else sys.stdin.read()
    except OSError as exc:
        raise UsageProblem(f"cannot read {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageProblem(f"{file or 'stdin'}: a credential is UTF-8 text") from None
    value = text[:-1] if text.endswith("\n") else text
    if not value:
        raise UsageProblem(f"no value: {file or 'stdin'} is empty")
    return value


def set_credential(client: OttoClient, name: str, project: str | None, file: str | None) -> int:
    value = read_value(file)
    who = _who()
    by = f"{who}@{socket.gethostname()}" if who else None
    client.set_credential(name, value, project, by)
    Terminal.of().write(f"credential {name} set for {project or 'every project'}")
    return 0


def list_credentials(client: OttoClient, as_json: bool) -> int:
    found = client.credentials()["credentials"]
    if as_json:
        _dump(found)
        return 0
    rows = [
        [c["name"], c["project"] or "(every project)", c["set_by"], _when(c["set_at"])]
        for c in found
    ]
    term = Terminal.of()
    if rows:
        table(term, ["NAME", "PROJECT", "SET BY", "SET AT"], rows)
    else:
        term.write("no credentials")
    return 0


def remove_credential(client: OttoClient, name: str, project: str | None) -> int:
    client.remove_credential(name, project)
    Terminal.of().write(f"credential {name} removed from {project or 'every project'}")
    return 0


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
