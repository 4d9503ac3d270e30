"""The client commands of `otto` (ps, show, logs, abort, retry, trigger, artifacts, events,
replay), as functions that print and return an exit code; `otto.cli` only declares their
options.

`guarded()` turns every client failure into one line on stderr and its exit code
(see `otto.client.errors`), never a traceback.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otto.client import render
from otto.client.errors import ClientError, UsageProblem
from otto.client.logs import LogPrinter, select_contexts
from otto.client.ottoclient import PREFIX_SEARCH_LIMIT, OttoClient
from otto.client.terminal import Cell, Terminal, plural, table
from otto.client.view import RunView
from otto.status import Status

DEFAULT_SERVER = "http://127.0.0.1:7670"
PIPELINE_STATES = ("Pending", "Running", "Complete")
EX_INTERRUPTED = 130


def guarded(action: Callable[[], int]) -> int:
    """Run a command; a ClientError becomes `otto: message` on stderr and its exit code."""
    try:
        return action()
    except ClientError as exc:
        sys.stderr.write(f"otto: {exc.message}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return EX_INTERRUPTED
    except BrokenPipeError:  # `otto events | head`: the reader has all it wanted
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def connect(server: str | None, token: str | None) -> OttoClient:
    return OttoClient(server or DEFAULT_SERVER, token=token or None)


def _dump(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def ps(
    client: OttoClient,
    state: str | None,
    repo: str | None,
    ref: str | None,
    limit: int,
    as_json: bool,
    project: str | None = None,
) -> int:
    wanted_state, wanted_status = _state_filter(state)
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    scanned = 0
    while True:
        page = client.pipelines(
            state=wanted_state,
            repo=repo,
            ref=ref,
            project=project,
            limit=limit if wanted_status is None else 500,
            cursor=cursor,
        )
        scanned += len(page.pipelines)
        found += [p for p in page.pipelines if wanted_status in (None, p.get("status"))]
        cursor = page.next_cursor
        if wanted_status is None or len(found) >= limit or not cursor:
            break
        if scanned >= PREFIX_SEARCH_LIMIT:
            break
    found = found[:limit]
    if as_json:
        _dump({"pipelines": found, "next_cursor": cursor})
    else:
        render.ps(Terminal.of(), found)
    return 0


def _state_filter(state: str | None) -> tuple[str | None, str | None]:
    """`--state` takes a pipeline state (Pending, Running, Complete) or a status
    (Success, Failed, …: complete runs with that status), in any case."""
    if state is None:
        return None, None
    for known in PIPELINE_STATES:
        if known.lower() == state.strip().lower():
            return known, None
    try:
        return "Complete", Status.parse(state).value
    except ValueError:
        choices = ", ".join([*PIPELINE_STATES, *(s.value for s in Status)])
        raise UsageProblem(f"--state: unknown state {state!r}; one of: {choices}") from None


def show(client: OttoClient, ident: str, as_json: bool) -> int:
    document = client.pipeline(client.resolve(ident))
    if as_json:
        _dump(document)
    else:
        render.show(Terminal.of(), RunView.load(document))
    return 0


def logs(client: OttoClient, ident: str, context: str | None, follow: bool) -> int:
    uuid = client.resolve(ident)
    run = RunView.load(client.pipeline(uuid))
    chosen = select_contexts(run, context)
    printer = LogPrinter(client, Terminal.of(), sys.stdout.buffer)
    if follow:
        wanted = {c.uuid for c in chosen}
        printer.follow(uuid, lambda r: [c for c in r.contexts() if c.uuid in wanted])
    else:
        printer.print_all(run, chosen)
    return 0


def abort(client: OttoClient, ident: str) -> int:
    uuid = client.resolve(ident)
    client.abort(uuid)
    Terminal.of().write(f"aborting pipeline {uuid}")
    return 0


def trigger(
    client: OttoClient, project: str, ref: str | None, sha: str | None, env: dict[str, str]
) -> int:
    """Start a run of `project` by hand (`env`: variables for its steps)."""
    answer = client.trigger(project, ref, sha, env, by=_who())
    uuid, at = answer["uuid"], answer.get("ref") or answer["sha"]
    out = Terminal.of()
    out.write(f"started pipeline {uuid} of {project} at {at} ({answer['sha'][:12]})")
    out.write(f"follow it: otto logs {uuid[:8]} --follow, or {client.base_url}/pipelines/{uuid}")
    return 0


def answer(
    client: OttoClient, ident: str, approve: bool, context: str | None, comment: str | None,
    params: dict[str, str],
) -> int:  # fmt: skip
    """Approve or reject a Waiting context of a run (`context`: its name; None: the one
    context waiting, a usage error when several are)."""
    uuid = client.resolve(ident)
    if context is None:
        waiting = [c.name for c in RunView.load(client.pipeline(uuid)).contexts()
                   if c.state == "Waiting"]  # fmt: skip
        if len(waiting) != 1:
            listed = f": {', '.join(waiting)}; name one with --context" if waiting else ""
            raise UsageProblem(f"pipeline {uuid} has {plural(len(waiting), 'waiting context')}"
                               f"{listed}")  # fmt: skip
        context = waiting[0]
    client.answer(uuid, context, approve, by=_who(), comment=comment, params=params)
    said = "approved" if approve else "rejected"
    Terminal.of().write(f"{said} {context} of pipeline {uuid}")
    return 0


def _who() -> str | None:
    """The local user's name, as the server records it (`manual by NAME`), when it is one."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        return None
    return name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}", name) else None


def retry(client: OttoClient, ident: str, every: bool = False) -> int:
    uuid = client.resolve(ident)
    answer = client.retry(uuid, every)
    retried = answer.get("retried") or []
    run = RunView.load(client.pipeline(uuid))
    names = [c.name for c in run.contexts() if c.uuid in retried]
    shown = f": {', '.join(names)}" if names else ""
    Terminal.of().write(f"retrying pipeline {uuid} ({plural(len(retried), 'context')}{shown})")
    return 0


def replay(client: OttoClient, ident: str, as_json: bool) -> int:
    """Replay one run: `consistent` (exit 0), or each difference (exit 1)."""
    verdict = client.replay(client.resolve(ident))
    if as_json:
        _dump(verdict)
    else:
        render.replay(Terminal.of(), verdict)
    return 0 if verdict["consistent"] else 1


def replay_all(client: OttoClient, page_size: int, as_json: bool) -> int:
    """Replay every run, newest first, a page of runs at a time: each inconsistent run as
    it is found, then how many were checked and how many inconsistent; exit 1 if any."""
    term = Terminal.of()
    checked = inconsistent = 0
    cursor: str | None = None
    while True:
        page = client.pipelines(limit=page_size, cursor=cursor)
        for run in page.pipelines:
            verdict = client.replay(run["uuid"])
            checked += 1
            if verdict["consistent"]:
                continue
            inconsistent += 1
            if as_json:
                sys.stdout.write(json.dumps(verdict) + "\n")
            else:
                render.replay(term, verdict)
        cursor = page.next_cursor
        if not cursor:
            break
    summary = {"checked": checked, "inconsistent": inconsistent}
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        term.write(f"{plural(checked, 'run')} checked, {inconsistent} inconsistent")
    return 1 if inconsistent else 0


def gc(client: OttoClient, dry_run: bool, as_json: bool) -> int:
    """Free (`dry_run`: list) what the retention policy lets go: each run's logs and
    artifacts, each workspace, each cache past its project's limit, then the totals."""
    answer = client.gc(dry_run)
    if as_json:
        _dump(answer)
        return 0
    term = Terminal.of()
    rows: list[list[Cell]] = [
        ["logs", r["pipeline"], r["project"] or "-", r["why"], str(r["objects"]), str(r["bytes"])]
        for r in answer["runs"]
    ]
    rows += [
        ["workspace", w["pipeline"], w["project"] or "-", w["path"], "-", str(w["bytes"])]
        for w in answer["workspaces"]
    ]
    rows += [
        ["cache", "-", c["project"], c["key"], "1", str(c["bytes"])]
        for c in answer.get("caches", [])
    ]
    if rows:
        table(term, ["WHAT", "PIPELINE", "PROJECT", "WHY", "OBJECTS", "BYTES"], rows)
    runs, workspaces = plural(len(answer["runs"]), "run"), len(answer["workspaces"])
    done = "would free" if dry_run else "freed"
    term.write(
        f"{done} the logs and artifacts of {runs} ({plural(answer['objects'], 'object')}) and "
        f"{plural(workspaces, 'workspace')} and {plural(len(answer.get('caches', [])), 'cache')}: "
        f"{answer['bytes']} bytes"
    )
    return 0


def artifacts(client: OttoClient, ident: str, name: str | None, output: str | None) -> int:
    """List a run's artifacts, or download the one `name` names (to `output`: a file,
    - for standard output; default: its own name, here)."""
    uuid = client.resolve(ident)
    prefix = f"{uuid}/artifacts/"
    found = {o["key"].removeprefix(prefix): o for o in client.objects(prefix)}
    if name is None:
        rows: list[list[Cell]] = [[n, str(o.get("size", "-"))] for n, o in sorted(found.items())]
        if rows:
            table(Terminal.of(), ["NAME", "BYTES"], rows)
        else:
            Terminal.of().write(f"pipeline {uuid[:8]} has no artifacts")
        return 0
    stored = next((n for n in (name, f"{name}.tar.gz") if n in found), None)
    if stored is None:
        names = ", ".join(sorted(found)) or "none"
        raise ClientError(f"pipeline {uuid[:8]} has no artifact {name!r} (artifacts: {names})")
    if output == "-":
        client.download(prefix + stored, sys.stdout.buffer)
        return 0
    _download_to(client, prefix + stored, Path(output or stored))
    return 0


def _download_to(client: OttoClient, key: str, target: Path) -> None:
    """The object at `target`, whole or not at all (a failed download leaves nothing)."""
    try:
        with tempfile.NamedTemporaryFile(
            dir=target.absolute().parent, prefix=f".{target.name}.", delete=False
        ) as partial:
            try:
                client.download(key, partial)
            except BaseException:
                os.unlink(partial.name)
                raise
        os.replace(partial.name, target)
    except OSError as exc:
        raise UsageProblem(f"cannot write {target}: {exc.strerror or exc}") from None
    sys.stderr.write(f"otto: saved {target}\n")


def events(
    client: OttoClient, after: int, pipeline: str | None, follow: bool, as_json: bool
) -> int:
    uuid = client.resolve(pipeline) if pipeline else None
    term = Terminal.of()
    found = client.stream_events(after, uuid) if follow else client.all_events(after, uuid)
    for transition in found:
        if as_json:
            sys.stdout.write(json.dumps(transition) + "\n")
        else:
            render.event(term, transition)
        if follow:
            sys.stdout.flush()
    return 0
