"""`otto run`: submit a pipeline, show it live, print what failed, exit with its status.

`run_pipeline(client, ottofile)` works against any server; `run_here(ottofile)`
first starts an ephemeral embedded one (a temporary $OTTO_HOME unless `home`
is given) whose contexts start in a copy of `workdir` (`otto.client.workspace`;
None: an empty workspace), and shuts it down afterwards, agents included.
Ctrl-C (or SIGTERM) asks the server to abort the run and waits for it to end
`Aborted`; a second one stops waiting.
"""

from __future__ import annotations

import getpass
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from otto.client.embedded import AppFactory, EmbeddedServer
from otto.client.errors import ClientError, UsageProblem
from otto.client.logs import LogPrinter
from otto.client.ottoclient import OttoClient
from otto.client.progress import Progress, progress_for
from otto.client.render import rejection
from otto.client.terminal import Terminal, duration
from otto.client.view import RunView
from otto.client.workspace import snapshot
from otto.config import ConfigError, load_settings
from otto.status import Status

TAIL_LINES = 50
SHOWN_OUTCOMES = ("Failed", "Error", "Unstable")


@dataclass(frozen=True)
class Output:
    """What `otto run` shows besides failures: every step's log (`verbose`), every
    transition (`events`) rather than the outcomes only."""

    verbose: bool = False
    events: bool = False


def run_here(
    ottofile: str,
    term: Terminal,
    build_app: AppFactory,
    home: str | None = None,
    workdir: Path | None = None,
    output: Output = Output(),
) -> int:
    """Run `ottofile` on an embedded server of its own (its app made by `build_app`), its
    workspaces a copy of `workdir` (None: empty); the exit code of its status."""
    with _home(home) as settings_home:
        try:
            settings = load_settings(home=settings_home)
        except ConfigError as exc:
            raise UsageProblem(f"configuration: {exc}") from None
        # This server runs the pipeline itself, and once `otto run` is done (or gives up
        # waiting) nothing of it may keep running.
        here: dict[str, object] = {"local_orchestrator": True, "shutdown_grace": 0.0}
        if home is None:  # throw-away state: never someone's configured database
            here.update(db="", objects="")
        settings = settings.model_copy(update=here)
        # Its own token (OTTO_TOKEN, a config file) guards it like any server: send it.
        token = settings.token or None
        source = snapshot(workdir, Path(settings_home)) if workdir is not None else None
        with (
            EmbeddedServer(settings, build_app, source) as server,
            OttoClient(server.url, token) as client,
        ):
            return run_pipeline(client, ottofile, term, output)


def run_pipeline(
    client: OttoClient, ottofile: str, term: Terminal, output: Output = Output()
) -> int:
    """Submit, watch until complete, print failing steps' logs (every step's with
    `output.verbose`); the exit code of its status."""
    with _interrupts_as_keyboard():
        progress = progress_for(term, every_transition=output.events)
        uuid = client.create(ottofile=ottofile, trigger=f"otto run by {getpass.getuser()}").uuid
        _watch(client, uuid, progress)
    final = RunView.load(client.pipeline(uuid))
    _report(client, term, final, output.verbose)
    try:
        return Status(final.status).exit_code
    except ValueError:
        return Status.ERROR.exit_code


def _watch(client: OttoClient, uuid: str, progress: Progress) -> None:
    """Show the run until it completes; an interrupt, even one that comes before the
    first look at the run, asks for an abort (a second one stops waiting)."""
    stream = client.stream_events(after=0, pipeline=uuid)
    aborting = False
    run: RunView | None = None
    try:
        while True:
            try:
                if run is None:
                    run = RunView.load(client.pipeline(uuid))
                    progress.start(run)
                for event in stream:
                    run.apply(event)
                    progress.update(run, event)
                    if _ends(event):
                        return
            except KeyboardInterrupt:
                if aborting:
                    progress.note("stopped waiting; the run may still be aborting")
                    raise
                aborting = True
                progress.note("interrupted: aborting the run (interrupt again to stop waiting)")
                try:
                    client.abort(uuid)
                except ClientError as exc:
                    if exc.status != 409:  # 409: it completed meanwhile
                        raise
    finally:
        if run is not None:
            progress.stop(run)


def _ends(event: dict[str, Any]) -> bool:
    return event["entity"] == "pipeline" and event["to"] == "Complete"


def _report(client: OttoClient, term: Terminal, run: RunView, verbose: bool) -> None:
    printer = LogPrinter(client, term, sys.stdout.buffer)
    if verbose:
        printer.print_all(run, list(run.contexts()))
    else:
        _tail_failures(printer, run)
    if run.rejected is not None:
        rejection(term, run.rejected)
    state = run.status or run.state
    term.write(f"{term.symbol(state)} pipeline {run.uuid[:8]} {state} in {duration(run.duration)}")
    term.stream.flush()


def _tail_failures(printer: LogPrinter, run: RunView) -> None:
    for context in run.contexts():
        shown = [s for s in context.steps if s.state in SHOWN_OUTCOMES]
        for step in shown:
            printer.tail(run, context, step, TAIL_LINES)
        if not shown and context.state in ("Failed", "Error"):
            printer.context_tail(run, context, TAIL_LINES)


@contextmanager
def _home(home: str | None) -> Iterator[str]:
    if home is not None:
        yield str(Path(home).absolute())
        return
    with tempfile.TemporaryDirectory(prefix="otto-run-", ignore_cleanup_errors=True) as tmp:
        yield tmp


@contextmanager
def _interrupts_as_keyboard() -> Iterator[None]:
    """SIGTERM (a CI timeout, `kill`) aborts the run just like Ctrl-C."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
