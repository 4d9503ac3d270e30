"""`otto agent --invocation FILE`: one context, run in this process, exit code = status."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

from otto.agent.invocation import InvocationError, load_invocation
from otto.agent.process import adopt_orphans
from otto.agent.reporter import JsonLinesReporter
from otto.agent.runner import Agent
from otto.status import Status


def agent_main(invocation_path: str | Path) -> int:
    """Run the context an invocation file describes; 0 Success, 1 Failed, 2 Aborted,
    3 Unstable, 4 Error. SIGTERM or SIGINT aborts the running step's process group."""
    try:
        invocation = load_invocation(invocation_path)
    except InvocationError as exc:
        print(f"otto agent: {exc}", file=sys.stderr)
        return Status.ERROR.exit_code
    try:
        report = invocation.report
        reporter = JsonLinesReporter.open(
            report.path,
            invocation.pipeline,
            invocation.context.uuid,
            invocation.lease,
            hold=report.hold,
        )
    except OSError as exc:
        print(f"otto agent: cannot open the report file: {exc}", file=sys.stderr)
        return Status.ERROR.exit_code
    agent = Agent(invocation, reporter)
    if agent.workspace.host_isolation.contains_processes:
        adopt_orphans()  # this process is the agent's alone

    def on_signal(signum: int, frame: FrameType | None) -> None:
        agent.abort("user_abort" if signum == signal.SIGINT else "aborted")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        result = agent.run()
    except Exception as exc:  # the reporter failed (e.g. its pipe closed); never a traceback
        print(f"otto agent: {type(exc).__name__}: {exc}", file=sys.stderr)
        return Status.ERROR.exit_code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reporter.close()
    return result.status.exit_code
