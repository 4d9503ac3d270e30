"""A warm agent: Python started and the agent imported before there is work for it.

`python -m otto.orchestrator.warm` waits for one line on stdin, the path of an
invocation file, then runs that context exactly as `otto agent --invocation`
would (reports as JSON lines on stdout, exit code = status). An orchestrator
keeps a few of these ready so a context does not pay for an interpreter start.
"""

from __future__ import annotations

import sys

from otto.agent.main import agent_main


def main() -> int:
    path = sys.stdin.readline().strip()
    if not path:  # the orchestrator is shutting its pool down
        return 0
    return agent_main(path)


if __name__ == "__main__":
    sys.exit(main())
