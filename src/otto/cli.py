"""The `otto` command line (DESIGN §9).

Exit codes: 0 success, 1 an invalid pipeline (or a Failed run), 2 Aborted,
3 Unstable, 4 Error, 64 a usage error (EX_USAGE), so that a mistyped command
never reads as a pipeline status.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console

# typer vendors click; its UsageError is what a bad command line raises.
from typer._click.exceptions import ClickException, UsageError

from otto.model import Pipeline
from otto.parser import ParseError, parse_located, render
from otto.steps import standard_manifests, step_problems
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
    name, data = _read(file)
    try:
        return parse_located(data, filename=name)
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
) -> None:
    """Say what a pipeline will run, checking every step against its manifest."""
    pipeline, positions = _load_located(file)
    manifests = standard_manifests()
    problems = [
        p for context in pipeline.contexts() for p in step_problems(context.steps, manifests)
    ]
    for line in explain_lines(pipeline, manifests):
        typer.echo(line)
    for step, error in problems:
        line, column = positions[step.uuid]
        _error(f"{file}:{line}:{column}: {error}")
    if problems:
        raise typer.Exit(EX_INVALID)


@app.command("fmt")
def fmt_command(
    file: str = typer.Argument(..., help="The Ottofile to format, or - for standard input."),
    write: bool = typer.Option(False, "--write", "-w", help="Rewrite the file in place."),
) -> None:
    """Print an Ottofile in the one canonical style."""
    text = render(_load(file))
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
) -> None:
    """Run every Otto service in one process (embedded defaults under $OTTO_HOME)."""
    from otto.config import ConfigError, load_settings
    from otto.server import serve

    try:
        settings = load_settings(config, home=home, host=host, port=port, db=db)
    except ConfigError as exc:
        _error(f"otto server: {exc}")
        raise typer.Exit(EX_USAGE) from None
    _error(f"otto server on http://{settings.host}:{settings.port} (state in {settings.db_url})")
    serve(settings)


@app.command("agent")
def agent_command(
    invocation: str = typer.Option(..., "--invocation", help="The invocation JSON file."),
) -> None:
    """Run one context of a pipeline (what orchestrators launch); exit code = its status."""
    from otto.agent import agent_main

    raise typer.Exit(agent_main(invocation))


def main(argv: list[str] | None = None) -> int:
    try:
        code = app(args=argv, prog_name="otto", standalone_mode=False)
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
