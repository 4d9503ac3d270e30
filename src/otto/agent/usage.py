"""The agent's small command lines: a usage error exits 64 (EX_USAGE), never 2."""

from __future__ import annotations

import argparse
import sys

EX_USAGE = 64


class UsageParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: {message}", file=sys.stderr)
        raise SystemExit(EX_USAGE)
