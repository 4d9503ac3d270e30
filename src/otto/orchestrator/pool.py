"""Agent processes: each a separate process, started ahead of need from a small warm pool."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path


class AgentProcess:
    """One agent running one context; its reports arrive as JSON lines on stdout."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def start(self, invocation: Path) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{invocation}\n")
        self.process.stdin.close()

    def reports(self) -> Iterator[str]:
        assert self.process.stdout is not None
        yield from self.process.stdout

    def terminate(self) -> None:
        """Ask the agent to abort its step (it stops the step's process group itself)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()

    def wait(self) -> int:
        return self.process.wait()


class WarmPool:
    """Keeps `size` agent interpreters started and waiting for an invocation."""

    def __init__(self, size: int = 2, env: dict[str, str] | None = None) -> None:
        self.size = size
        self.env = env
        self._ready: list[AgentProcess] = []
        self._lock = threading.Lock()
        self._closed = False
        self._refill()

    def take(self) -> AgentProcess:
        with self._lock:
            agent = self._ready.pop(0) if self._ready else None
        if agent is None or agent.process.poll() is not None:
            agent = self._spawn()
        threading.Thread(target=self._refill, daemon=True).start()
        return agent

    def close(self) -> None:
        with self._lock:
            self._closed = True
            ready, self._ready = self._ready, []
        for agent in ready:
            if agent.process.stdin:
                agent.process.stdin.close()  # an empty line: the warm agent exits
            agent.wait()

    def _refill(self) -> None:
        while True:
            with self._lock:
                if self._closed or len(self._ready) >= self.size:
                    return
            agent = self._spawn()
            with self._lock:
                if self._closed:
                    agent.kill()
                    return
                self._ready.append(agent)

    def _spawn(self) -> AgentProcess:
        process = subprocess.Popen(
            [sys.executable, "-m", "otto.orchestrator.warm"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=self.env or dict(os.environ),
        )
        return AgentProcess(process)
