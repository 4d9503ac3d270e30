"""The `otto` command line (documented in the README, "The command line").

Exit codes: 0 success, 1 an invalid pipeline (or a Failed run), 2 Aborted,
3 Unstable, 4 Error, 64 a usage error (EX_USAGE), so that a mistyped command
never reads as a pipeline status. The client commands (run, ps, show, logs,
abort, retry, trigger, artifacts, events, replay) add 65 EX_DATAERR (the server refused: an unknown
uuid, a run already complete), 69 EX_UNAVAILABLE (no server there, or it failed),
77 EX_NOPERM (a missing or wrong token) and 130 (interrupted).
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

# typer vendors click; its UsageError is what a bad command line raises.
from typer._click import Command, Context
from typer._click.exceptions import ClickException, UsageError
from typer.core import TyperArgument, TyperOption

from otto import __version__
from otto.conditions import Trigger
from otto.model import Pipeline
from otto.parser import ParseError, format_ottofile, parse_located, parse_syntax
from otto.parser.build import Syntax
from otto.steps import standard_manifests
from otto.steps.checking import pipeline_problems
from otto.steps.explain import explain_lines

EX_USAGE = 64
EX_INVALID = 1

app = typer.Typer(
    name="otto",
    help="Otto: a self-hosted CI/CD system.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stderr = Console(stderr=True, highlight=False)


def _show_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"otto {__version__}")
        raise typer.Exit(0)


@app.callback()
def _otto(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        is_eager=True,
        callback=_show_version,
    ),
) -> None:
    """Otto: a self-hosted CI/CD system."""


class Format(StrEnum):
    JSON = "json"
    YAML = "yaml"


def _read(file: str) -> tuple[str, bytes]:
    if file == "-":
        return "<stdin>", sys.stdin.buffer.read()
    path = Path(file)
    try:
        return file, path.read_bytes()
    except OSError as exc:
        _error(f"otto: cannot read {file}: {exc.strerror or exc}")
        raise typer.Exit(EX_USAGE) from None


def _load(file: str) -> Pipeline:
    return _load_located(file)[0]


def _load_located(file: str) -> tuple[Pipeline, dict[str, tuple[int, int]]]:
    pipeline, positions, _ = _load_syntax(file)
    return pipeline, positions


def _load_syntax(file: str) -> tuple[Pipeline, dict[str, tuple[int, int]], Syntax]:
    name, data = _read(file)
    try:
        return parse_syntax(data, filename=name)
    except ParseError as exc:
        _error(str(exc))
        raise typer.Exit(EX_INVALID) from None


def _error(text: str) -> None:
    # Plain stderr: rich would wrap `FILE:LINE:COLUMN: message` at the terminal width.
    sys.stderr.write(text.rstrip("\n") + "\n")


@app.command("parse")
def parse_command(
    file: str = typer.Argument(..., help="The Ottofile to parse, or - for standard input."),
    format: Format = typer.Option(Format.JSON, "--format", "-f", help="Output format."),
) -> None:
    """Parse an Ottofile and print its pipeline model."""
    pipeline = _load(file)
    typer.echo(pipeline.to_yaml() if format is Format.YAML else pipeline.to_json(indent=2))


@app.command("explain")
def explain_command(
    file: str = typer.Argument(..., help="The Ottofile to explain, or - for standard input."),
    branch: str = typer.Option(None, "--branch", help="Evaluate the gates for this branch."),
    event: str = typer.Option(
        None, "--event", help="… and this event: push, tag, pull_request, manual, schedule."
    ),
    tag: str = typer.Option(None, "--tag", help="… and this tag."),
    project: str = typer.Option(None, "--project", help="… and this project."),
    variables: list[str] = typer.Option(
        [], "-e", "--env", help="KEY=VALUE: a trigger variable, read as env.KEY (repeatable)."
    ),
) -> None:
    """Say what a pipeline will run, checking every step against its manifest, each
    rollback and notify hook under its stage; with --branch, --event, --tag, --project
    or -e, which stages such a run would run, skip or hold for input (hooks depend on
    outcomes)."""
    trigger = _trigger(branch, event, tag, project, variables)
    pipeline, positions, syntax = _load_syntax(file)
    manifests = standard_manifests()
    problems = pipeline_problems(pipeline, manifests)
    for line in explain_lines(pipeline, manifests, trigger, syntax.matrices):
        typer.echo(line)
    for step, error in problems:
        line, column = positions[step.uuid]
        _error(f"{file}:{line}:{column}: {error}")
    if problems:
        raise typer.Exit(EX_INVALID)


def _trigger(
    branch: str | None, event: str | None, tag: str | None, project: str | None, pairs: list[str]
) -> Trigger | None:
    """What `otto explain` evaluates gates for; None when no option asks for it."""
    from otto.psm.records import EVENTS

    if event is not None and event not in EVENTS:
        raise typer.BadParameter(
            f"{event!r} is not one of {', '.join(EVENTS)}", param_hint="--event"
        )
    environment = _assignments(pairs)
    if branch is None and event is None and tag is None and project is None and not pairs:
        return None
    return Trigger(
        branch=branch or "",
        tag=tag or "",
        event=event or "",
        project=project or "",
        environment=environment,
    )


def _assignments(pairs: list[str], option: str = "-e") -> dict[str, str]:
    """`-e KEY=VALUE` options as a mapping; a usage error for one without its `=`."""
    assigned: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise typer.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint=option)
        assigned[key] = value
    return assigned


@app.command("fmt")
def fmt_command(
    file: str = typer.Argument(..., help="The Ottofile to format, or - for standard input."),
    write: bool = typer.Option(False, "--write", "-w", help="Rewrite the file in place."),
) -> None:
    """Print an Ottofile in the one canonical style, its comments kept in place."""
    name, data = _read(file)
    try:
        text = format_ottofile(data, filename=name)
    except ParseError as exc:
        _error(str(exc))
        raise typer.Exit(EX_INVALID) from None
    if write and file != "-":
        Path(file).write_text(text, encoding="utf-8")
    else:
        typer.echo(text, nl=False)


@app.command("server")
def server_command(
    host: str = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    port: int = typer.Option(None, help="Port to listen on (default 7670)."),
    home: str = typer.Option(None, help="Where state lives (default $OTTO_HOME or ./.otto)."),
    db: str = typer.Option(None, help="A SQLite file or a postgresql:// URL."),
    config: str = typer.Option(None, help="A YAML file of settings (default $OTTO_HOME/otto.yml)."),
    log_level: str = typer.Option(
        None, help="What the log says: debug, info (default), warning or error."
    ),
    log_format: str = typer.Option(
        None, help="The log's form: text (default, for people) or json (one object a line)."
    ),
) -> None:
    """Run every Otto service in one process (embedded defaults under $OTTO_HOME).

    Its log goes to stderr; SIGHUP reloads the project files of $OTTO_HOME/projects.d."""
    from otto.client.errors import EX_UNAVAILABLE
    from otto.config import ConfigError, load_settings
    from otto.server import CannotListen, serve

    try:
        settings = load_settings(
            config, home=home, host=host, port=port, db=db,
            log_level=log_level, log_format=log_format,
        )  # fmt: skip
    except ConfigError as exc:
        _error(f"otto server: {exc}")
        raise typer.Exit(EX_USAGE) from None
    try:
        serve(settings)
    except CannotListen as exc:
        _error(f"otto server: {exc}")
        raise typer.Exit(EX_UNAVAILABLE) from None


@app.command("agent")
def agent_command(
    invocation: str = typer.Option(..., "--invocation", help="The invocation JSON file."),
) -> None:
    """Run one context of a pipeline (what orchestrators launch); exit code = its status."""
    from otto.agent import agent_main

    raise typer.Exit(agent_main(invocation))


@app.command("orchestrator")
def orchestrator_command(
    server: str = typer.Option(
        ...,
        "--server",
        envvar="OTTO_SERVER",
        help="The Otto server, e.g. http://ci:7670; or replicas sharing one database, "
        "comma separated (the next is used when one stops answering).",
    ),
    token: str = typer.Option(
        None, "--token", envvar="OTTO_TOKEN", help="The server's API token.", show_default=False
    ),
    name: str = typer.Option(None, help="Name among orchestrators (default: the host name)."),
    labels: str = typer.Option(None, help="Labels offered to stages, e.g. 'gpu,large'."),
    capacity: int = typer.Option(None, help="Contexts run at once (default 2 × cores)."),
    cost_factor: float = typer.Option(1.0, help="Multiplies bids: higher, less work."),
    workspace: str = typer.Option(
        None, help="Where workspaces go (default $OTTO_HOME/orchestrators/NAME)."
    ),
    grace: float = typer.Option(30.0, help="Seconds running contexts get on SIGTERM."),
    runtime: str = typer.Option(
        None,
        help="What it offers: podman|docker (images, and the sandbox for the rest), sandbox "
        "(bubblewrap only), none (unsandboxed, no images). Default: the settings "
        "(OTTO_SANDBOX, OTTO_CONTAINERS).",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log in detail."),
) -> None:
    """Run contexts for a server from this machine: bid, run agents, report over HTTP."""
    from otto.orchestrator.command import orchestrator_main

    raise typer.Exit(
        orchestrator_main(
            server, token, name, labels, capacity, cost_factor, workspace, grace, verbose, runtime
        )
    )


# -- the client commands (otto.client): run, ps, show, logs, abort, retry, trigger, events -----


def _server_option() -> Any:
    return typer.Option(
        None,
        "--server",
        envvar="OTTO_SERVER",
        help="The Otto server (default $OTTO_SERVER or http://127.0.0.1:7670).",
        show_default=False,
    )


def _token_option() -> Any:
    return typer.Option(
        None,
        "--token",
        envvar="OTTO_TOKEN",
        help="API token (default $OTTO_TOKEN).",
        show_default=False,
    )


def _client_call(server: str | None, token: str | None, action: Callable[[Any], int]) -> None:
    from otto.client.commands import connect, guarded

    def call() -> int:
        with connect(server, token) as client:
            return action(client)

    raise typer.Exit(guarded(call))


@app.command("run")
def run_command(
    file: str = typer.Argument("Ottofile", help="The Ottofile to run, or - for standard input."),
    server: str = typer.Option(
        None,
        "--server",
        help="Submit to this running server instead of an embedded one.",
        show_default=False,
    ),
    token: str = _token_option(),
    home: str = typer.Option(
        None,
        "--home",
        metavar="DIR",
        help="State of the embedded server (default: a temporary directory).",
        show_default=False,
    ),
    clean: bool = typer.Option(
        False, "--clean", help="Start from an empty workspace, not a copy of this directory."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Show every step's log, not only failing ones."
    ),
    events: bool = typer.Option(
        False, "--events", help="A line per state transition, instead of the live view."
    ),
) -> None:
    """Run a pipeline through the full machinery, live; exit code = its status.

    Its workspaces start as a copy of this directory (in a git repository: HEAD and \
the uncommitted changes, without what .gitignore ignores); with --server, or --clean, empty.

    0 Success, 1 Failed (or an invalid Ottofile), 2 Aborted, 3 Unstable, 4 Error.
    Ctrl-C aborts the run and waits for it to end.
    """
    from otto.client.commands import connect, guarded
    from otto.client.run import Output, run_here, run_pipeline
    from otto.client.terminal import Terminal

    if server and home:
        _error("otto run: give --server or --home, not both")
        raise typer.Exit(EX_USAGE)
    name, data = _read(file)  # once: FILE may be - (standard input)
    try:
        pipeline, positions = parse_located(data, filename=name)
    except ParseError as exc:
        _error(str(exc))
        raise typer.Exit(EX_INVALID) from None
    if not server:  # the embedded server runs exactly the standard steps known here
        problems = pipeline_problems(pipeline)
        for step, error in problems:
            line, column = positions[step.uuid]
            _error(f"{name}:{line}:{column}: {error}")
        if problems:
            raise typer.Exit(EX_INVALID)
    text = data.decode("utf-8-sig", errors="replace")
    term = Terminal.of()
    output = Output(verbose=verbose, events=events)

    def call() -> int:
        if not server:
            from otto.server import build_app  # only the embedded server needs it loaded

            workdir = None if clean else Path.cwd()
            return run_here(text, term, build_app, home=home, workdir=workdir, output=output)
        with connect(server, token) as client:
            return run_pipeline(client, text, term, output)

    raise typer.Exit(guarded(call))


@app.command("ps")
def ps_command(
    state: str = typer.Option(
        None, "--state", help="Pending, Running, Complete, or a status (Success, Failed, …)."
    ),
    repo: str = typer.Option(None, "--repo", help="Only runs of this repository."),
    ref: str = typer.Option(
        None, "--ref", help="Only runs of this branch or tag (main, v1.0) or full ref."
    ),
    project: str = typer.Option(None, "--project", help="Only runs of this project."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=500, help="How many runs."),
    as_json: bool = typer.Option(False, "--json", help="JSON for scripts."),
    server: str = _server_option(),
    token: str = _token_option(),
) -> None:
    """Recent runs, newest first: each one's project (or repository), ref and trigger."""
    from otto.client import commands

    _client_call(server, token, lambda c: commands.ps(c, state, repo, ref, limit, as_json, project))


@app.command("show")
def show_command(
    uuid: str = typer.Argument(..., help="A pipeline uuid, or a unique prefix of one."),
    as_json: bool = typer.Option(False, "--json", help="JSON for scripts."),
    server: str = _server_option(),
    token: str = _token_option(),
) -> None:
    """Every batch, context and step of a run: states, who ran what, attempts, durations."""
    from otto.client import commands

    _client_call(server, token, lambda c: commands.show(c, uuid, as_json))


@app.command("logs")
def logs_command(
    uuid: str = typer.Argument(..., help="A pipeline uuid, or a unique prefix of one."),
    context: str = typer.Option(None, "--context", "-c", help="Only this context (name)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the run ends."),
    server: str = _server_option(),
    token: str = _token_option(),
) -> None:
    """The logs of a run's steps, in order, with a header per step."""
    from otto.client import commands

    _client_call(server, token, lambda c: commands.logs(c, uuid, context, follow))


@app.command("trigger")
def trigger_command(
    project: str = typer.Argument(..., help="The project (its file's name in projects.d)."),
    ref: str = typer.Option(
        None, "--ref", help="A branch or tag (default: the project's default branch)."
    ),
    sha: str = typer.Option(None, "--sha", help="A commit (its full SHA)."),
    variables: list[str] = typer.Option(
        [],
        "-e",
        "--env",
        metavar="KEY=VALUE",
        help="A variable for the run's steps (repeatable).",
    ),
    server: str = _server_option(),
    token: str = _token_option(),
) -> None:
    """Start a run of a project's repository by hand, at a ref or a commit; it runs even
    when that commit already ran. Prints the new run's uuid and how to follow it."""
    from otto.client import commands

    env = _assignments(variables)
    _client_call(server, token, lambda c: commands.trigger(c, project, ref, sha, env))


@app.command("abort")
def abort_command(
    uuid: str = typer.Argument(..., help="A pipeline uuid, or a unique prefix of one."),
    server: str = _server_option(),
    token: str = _token_option(),
) -> None:
    """Abort a run (its running steps are stopped)."""
    from otto.client import commands

    _client_call(server, token, lambda c: commands.abort(c, uuid))


@app.command("approve")
def approve_command(
    uuid: str = typer.Argument(..., help="A pipeline uuid, or a unique prefix of one."),
    context: str = typer.Option(
        None, "--context", "-c", help="The waiting context (its stage name; default: the one)."
    ),
    comment: str = typer.Option(None, "--comment", help="Why, on record with who and when."),
    params: list[str] = typer.Option(
        [], "--param", metavar="NAME=VALUE", help="A value the input asks for (repeatable)."
    ),
    server: str = _server_option(),
    token: str = _token_option(),
) -> None:
    """Approve a context waiting at its gate's input: it runs (an enter gate) or counts as
    done (an exit gate). Its parameters' values reach later steps as VAR_<NAME>."""
    from otto.client import commands

    given = _assignments(params, "--param")
    _client_call(server, token, lambda c: commands.answer(c, uuid, True, context, comment, given))


@app.command("reject")
def reject_command(
    uuid: str = typer.Argument(..., help="A pipeline uuid, or a unique prefix of one."),
    context: str = typer.Option(
        None, "--context", "-c", help="The waiting context (its stage name; default: the one)."
    ),
    comment: str = typer.Option(None, "--comment", help="Why, on record with who and when."),
    server: str = _server_option(),
    token: str = _token_option(),
) -> None:
    """Reject a context waiting at its gate's input: it ends Failed (reason rejected)."""
    from otto.client import commands

    _client_call(server, token, lambda c: commands.answer(c, uuid, False, context, comment, {}))


@app.command("retry")
def retry_command(
    uuid: str = typer.Argument(..., help="A pipeline uuid, or a unique prefix of one."),
    every: bool = typer.Option(False, "--all", help="Re-run every context, successful ones too."),
    server: str = _server_option(),
    token: str = _token_option(),
) -> None:
    """Re-run the failed, errored, aborted and not-run contexts of a finished run
    (--all: every context), each as a new attempt."""
    from otto.client import commands

    _client_call(server, token, lambda c: commands.retry(c, uuid, every))


@app.command("replay")
def replay_command(
    uuid: str = typer.Argument(
        None, help="A pipeline uuid, or a unique prefix of one.", show_default=False
    ),
    every: bool = typer.Option(False, "--all", help="Check every run, a page at a time."),
    page_size: int = typer.Option(
        100, "--page-size", min=1, max=500, help="With --all: runs asked for at a time."
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON for scripts."),
    server: str = _server_option(),
    token: str = _token_option(),
) -> None:
    """Re-derive every state of a run from its transition log alone and compare it with
    the stored states: prints `consistent`, or each difference; exit 0 consistent, 1 not.

    --all checks every run: prints each inconsistent one and a summary line (runs
    checked, inconsistent); exit 1 if any is."""
    from otto.client import commands

    if every == (uuid is not None):
        _error("otto replay: give a pipeline uuid or --all")
        raise typer.Exit(EX_USAGE)
    if every:
        _client_call(server, token, lambda c: commands.replay_all(c, page_size, as_json))
    _client_call(server, token, lambda c: commands.replay(c, uuid, as_json))


@app.command("gc")
def gc_command(
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be freed."),
    as_json: bool = typer.Option(False, "--json", help="The server's answer, as JSON."),
    server: str = _server_option(),
    token: str = _token_option(),
) -> None:
    """Free what the server's retention policy lets go: old runs' logs and artifacts,
    workspaces of completed runs, caches past their project's limit (--dry-run: list
    them, free nothing)."""
    from otto.client import commands

    _client_call(server, token, lambda c: commands.gc(c, dry_run, as_json))


credentials_app = typer.Typer(
    help="The server's credentials: set, list, rm (values go in, never out); rotate-key.",
    no_args_is_help=True,
)
app.add_typer(credentials_app, name="credentials")


@credentials_app.command("set")
def credentials_set_command(
    name: str = typer.Argument(..., help="The credential's name, e.g. npm-token."),
    project: str = typer.Option(None, help="Only for this project (default: every project)."),
    file: str = typer.Option(None, help="Read the value from this file (default: stdin)."),
    server: str = _server_option(),
    token: str = _token_option(),
) -> None:
    """Set a credential; its value is read from stdin or --file, never from an argument."""
    from otto.client import credentials

    _client_call(server, token, lambda c: credentials.set_credential(c, name, project, file))


@credentials_app.command("list")
def credentials_list_command(
    as_json: bool = typer.Option(False, "--json", help="The server's answer, as JSON."),
    server: str = _server_option(),
    token: str = _token_option(),
) -> None:
    """List credentials: names, projects, who set them and when (never values)."""
    from otto.client import credentials

    _client_call(server, token, lambda c: credentials.list_credentials(c, as_json))


@credentials_app.command("rm")
def credentials_rm_command(
    name: str = typer.Argument(..., help="The credential's name."),
    project: str = typer.Option(None, help="That project's (default: the global one)."),
    server: str = _server_option(),
    token: str = _token_option(),
) -> None:
    """Remove a credential."""
    from otto.client import credentials

    _client_call(server, token, lambda c: credentials.remove_credential(c, name, project))


@credentials_app.command("rotate-key")
def credentials_rotate_key_command(
    home: str = typer.Option(None, help="Where state lives (default $OTTO_HOME or ./.otto)."),
    db: str = typer.Option(None, help="A SQLite file or a postgresql:// URL."),
    config: str = typer.Option(None, help="A YAML file of settings (default $OTTO_HOME/otto.yml)."),
) -> None:
    """Encrypt every credential under a new key (run where the server keeps its state;
    with OTTO_CREDENTIALS_KEY: under its first key)."""
    from otto.config import ConfigError, load_settings
    from otto.credentials import rotate_key
    from otto.credentials.keys import CredentialKeyError

    try:
        settings = load_settings(config, home=home, db=db)
        count = rotate_key(settings.home, settings.db_url)
    except (ConfigError, CredentialKeyError) as exc:
        _error(f"otto credentials rotate-key: {exc}")
        raise typer.Exit(EX_USAGE) from None
    typer.echo(f"{count} credential(s) encrypted under the new key")


@app.command("artifacts")
def artifacts_command(
    uuid: str = typer.Argument(..., help="A pipeline uuid, or a unique prefix of one."),
    download: str = typer.Option(
        None, "--download", "-d", metavar="NAME", help="Download this artifact."
    ),
    output: str = typer.Option(
        None,
        "--output",
        "-o",
        metavar="FILE",
        help="Where to save it (default: its name, here; - for standard output).",
    ),
    server: str = _server_option(),
    token: str = _token_option(),
) -> None:
    """A run's artifacts (what its `archive` steps stored), or one of them downloaded."""
    from otto.client import commands

    if output is not None and download is None:
        _error("otto artifacts: -o needs --download NAME")
        raise typer.Exit(EX_USAGE)
    _client_call(server, token, lambda c: commands.artifacts(c, uuid, download, output))


@app.command("events")
def events_command(
    after: int = typer.Option(0, "--after", min=0, help="Only transitions after this seq."),
    pipeline: str = typer.Option(None, "--pipeline", "-p", help="Only this run's transitions."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep streaming new ones."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
    server: str = _server_option(),
    token: str = _token_option(),
) -> None:
    """State transitions, oldest first (--follow: live, until interrupted)."""
    from otto.client import commands

    _client_call(server, token, lambda c: commands.events(c, after, pipeline, follow, as_json))


@app.command("version")
def version_command() -> None:
    """Print the version."""
    _show_version(True)


class _PlainArgument(TyperArgument):
    """An argument its help names (FILE, UUID), without a `<str>` beside it."""

    def display_type_rich(self, ctx: Context) -> str | None:
        return None


class _PlainOption(TyperOption):
    """An option whose help shows a word for its value (`--server SERVER`), nothing for
    a flag: not `<str>` and `<bool>`."""

    def display_type_rich(self, ctx: Context) -> str | None:
        if self.is_flag:
            return None
        return self.metavar or (self.name or "value").upper()

    def _get_number_range_help_str(self) -> str | None:
        low, high = getattr(self, "min", None), getattr(self, "max", None)
        if low is not None and high is not None:
            return f"{low} to {high}"
        if low is not None:
            return f"at least {low}"
        return f"at most {high}" if high is not None else None


def _plain_help(command: Command) -> Command:
    """`command` and its subcommands, their help in plain words."""
    for sub in getattr(command, "commands", {}).values():
        _plain_help(sub)
    help_option = command.get_help_option(Context(command))
    for param in [*command.params, *([help_option] if help_option else [])]:
        if isinstance(param, TyperArgument):
            param.__class__ = _PlainArgument
            param.metavar = param.metavar or (param.name or "value").upper()
        elif isinstance(param, TyperOption):
            param.__class__ = _PlainOption
    return command


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C must interrupt (and `otto run` abort its run) even when the shell started
    # us with SIGINT ignored: a background job, nohup, some CI runners.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    command = _plain_help(typer.main.get_command(app))
    try:
        code = command.main(args=argv, prog_name="otto", standalone_mode=False)
    except UsageError as exc:
        exc.show()
        return EX_USAGE
    except ClickException as exc:
        exc.show()
        return EX_USAGE
    except KeyboardInterrupt:
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
