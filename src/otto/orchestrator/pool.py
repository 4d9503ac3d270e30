"""Agent processes, one per context, forked from a zygote that has the agent loaded."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit


class AgentProcess:
    """One agent running one context; its reports arrive as JSON lines."""

    def __init__(self, pool: AgentPool, ident: int) -> None:
        self._pool = pool
        self.ident = ident
        self.pid: int | None = None
        self.exit_code: int | None = None
        self._reports: int | None = None
        self._started = threading.Event()
        self._exited = threading.Event()

    def start(self, invocation: str) -> None:
        """Fork the agent for `invocation` (its JSON): in a file without a name, as it may
        hold credentials (the object store's token) and is read once."""
        read, write = os.pipe()
        self._reports = read
        document = os.memfd_create("otto-invocation", os.MFD_CLOEXEC)
        try:
            with open(document, "w", encoding="utf-8", closefd=False) as file:
                file.write(invocation)
            self._pool.request(self, write, document)
        finally:
            os.close(write)
            os.close(document)
        if not self._started.wait(30):
            raise RuntimeError("the agent zygote did not start the agent")

    def reports(self) -> Iterator[str]:
        assert self._reports is not None
        with open(self._reports, encoding="utf-8") as stream:
            yield from stream

    def terminate(self) -> None:
        """Ask the agent to abort its step (it stops the step's process group itself)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        if not self._exited.wait(timeout):
            raise TimeoutError(f"agent {self.pid} still running")
        assert self.exit_code is not None
        return self.exit_code

    def _signal(self, sig: int) -> None:
        if self.pid is not None and not self._exited.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    # called by the pool's reader
    def _on_pid(self, pid: int) -> None:
        self.pid = pid
        self._started.set()

    def _on_exit(self, code: int) -> None:
        self.exit_code = code
        self._exited.set()


class AgentPool:
    """Forks agents from one zygote process (restarted if it dies). `object_store`: the
    agents' object-store URL, whose backend the zygote loads once for every fork;
    `environ`: the zygote's (and so every agent's) environment, default this process's."""

    def __init__(self, object_store: str = "", environ: Mapping[str, str] | None = None) -> None:
        self._environ = dict(environ) if environ is not None else None
        self._backend = urlsplit(object_store).scheme if "://" in object_store else ""
        self._ids = itertools.count(1)
        self._agents: dict[int, AgentProcess] = {}
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._zygote: subprocess.Popen[bytes] | None = None

    def take(self) -> AgentProcess:
        return AgentProcess(self, next(self._ids))

    def request(self, agent: AgentProcess, report_fd: int, invocation_fd: int) -> None:
        message = json.dumps({"id": agent.ident}).encode()
        with self._lock:
            sock = self._ensure_zygote()
            self._agents[agent.ident] = agent
            socket.send_fds(sock, [message], [report_fd, invocation_fd])

    def close(self) -> None:
        with self._lock:
            sock, zygote = self._sock, self._zygote
            self._sock = self._zygote = None
        if sock is not None:
            # shutdown, not just close: the reader thread's recv holds the socket open.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # the zygote sees EOF and exits
            sock.close()
        if zygote is not None:
            zygote.wait()

    def _ensure_zygote(self) -> socket.socket:
        if self._sock is not None and self._zygote is not None and self._zygote.poll() is None:
            return self._sock
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._zygote = subprocess.Popen(
            # -P: the current directory (a checkout, in `otto run`) never shadows a module.
            [sys.executable, "-P", "-m", "otto.agent.zygote", str(theirs.fileno()), self._backend],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env=self._environ,
            # Its own session: a Ctrl-C typed at `otto run` is for `otto run` to handle
            # (it aborts the run), not for the zygote and its agents to die of.
            start_new_session=True,
        )
        theirs.close()
        self._sock = ours
        threading.Thread(target=self._read, args=(ours,), name="zygote-reader", daemon=True).start()
        return ours

    def _read(self, sock: socket.socket) -> None:
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            message = json.loads(data)
            with self._lock:
                agent = self._agents.get(message["id"])
                if "exit" in message:
                    self._agents.pop(message["id"], None)
            if agent is None:
                continue
            if "pid" in message:
                agent._on_pid(message["pid"])
            else:
                agent._on_exit(message["exit"])
        # The zygote is gone: its agents' exits will never be told.
        with self._lock:
            orphans = [a for a in self._agents.values() if a.pid is None or a.exit_code is None]
            for agent in orphans:
                self._agents.pop(agent.ident, None)
        for agent in orphans:
            agent._on_exit(-1)
