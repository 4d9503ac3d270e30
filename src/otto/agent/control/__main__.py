"""`python -m otto.agent.control COMMAND ...`: talk to the agent from a step's shell.

    set-status STATUS            the context ends no better than STATUS (e.g. Unstable)
    capture NAME VALUE           later steps see VAR_NAME=VALUE
    drop NAME                    forget a captured variable
    terminate STATUS [REASON]    end the context now with STATUS

Exit codes: 0 done, 1 refused or unreachable, 64 usage error.
"""

from __future__ import annotations

import sys

from otto.agent.control.client import (
    ControlError,
    capture_variable,
    drop_variable,
    set_status,
    terminate,
)
from otto.agent.usage import UsageParser


def main(argv: list[str] | None = None) -> int:
    parser = UsageParser(prog="python -m otto.agent.control", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("set-status", help="the context ends no better than STATUS")
    p.add_argument("status")
    p = commands.add_parser("capture", help="later steps see VAR_NAME=VALUE")
    p.add_argument("name")
    p.add_argument("value")
    p = commands.add_parser("drop", help="forget a captured variable")
    p.add_argument("name")
    p = commands.add_parser("terminate", help="end the context now with STATUS")
    p.add_argument("status")
    p.add_argument("reason", nargs="?")
    args = parser.parse_args(argv)
    try:
        if args.command == "set-status":
            set_status(args.status)
        elif args.command == "capture":
            capture_variable(args.name, args.value)
        elif args.command == "drop":
            drop_variable(args.name)
        else:
            terminate(args.status, args.reason)
    except ControlError as exc:
        print(f"otto control: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
