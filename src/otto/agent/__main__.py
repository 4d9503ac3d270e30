"""`python -m otto.agent --invocation FILE` (what `otto agent` runs)."""

from __future__ import annotations

import argparse
import sys

from otto.agent.main import agent_main

EX_USAGE = 64


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(EX_USAGE)


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="otto agent", description="Run one context of a pipeline.")
    parser.add_argument("--invocation", required=True, metavar="FILE", help="invocation JSON")
    args = parser.parse_args(argv)
    return agent_main(args.invocation)


if __name__ == "__main__":
    sys.exit(main())
