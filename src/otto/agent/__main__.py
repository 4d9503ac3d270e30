"""`python -m otto.agent --invocation FILE` (what `otto agent` runs)."""

from __future__ import annotations

import sys

from otto.agent.main import agent_main
from otto.agent.usage import UsageParser


def main(argv: list[str] | None = None) -> int:
    parser = UsageParser(prog="otto agent", description="Run one context of a pipeline.")
    parser.add_argument("--invocation", required=True, metavar="FILE", help="invocation JSON")
    args = parser.parse_args(argv)
    return agent_main(args.invocation)


if __name__ == "__main__":
    sys.exit(main())
