"""The agent zygote: one process with Python and the agent already loaded, forking an
agent per context.

Each context still gets an agent process of its own, separate from the
server, but forking a loaded interpreter costs about a millisecond where
starting one costs hundreds: that is what lets a 2-core machine run a
hundred small pipelines a second.

Protocol, over a SOCK_SEQPACKET unix socket (one message each way per event):
the orchestrator sends `{"id", "invocation"}` with the write end of a pipe
attached (SCM_RIGHTS); the zygote forks, the child makes that pipe its
stdout (the agent's JSON-line reports) and runs the context; the zygote
answers `{"id", "pid"}`, and `{"id", "exit"}` when the child ends. The zygote
is single-threaded, so forking it is safe. When the orchestrator goes away
(it closed the socket, or died), the zygote stops the agents still running
(SIGTERM: each aborts its step's process group) rather than leave orphans whose
results nobody would take.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import sys


def serve(sock: socket.socket) -> None:
    children: dict[int, int] = {}  # pid → request id

    def reap(signum: int = 0, frame: object = None) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            request = children.pop(pid, None)
            if request is not None:
                code = os.waitstatus_to_exitcode(status)
                _send(sock, {"id": request, "exit": code})

    signal.signal(signal.SIGCHLD, reap)
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 65536, 1)
        except (ConnectionError, OSError):
            data = b""
        if not data:  # the orchestrator closed its end, or died
            for pid in list(children):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            return
        request = json.loads(data)
        pid = os.fork()
        if pid == 0:
            _child(sock, fds[0], request["invocation"])
        os.close(fds[0])
        children[pid] = request["id"]
        _send(sock, {"id": request["id"], "pid": pid})
        reap()


def _child(sock: socket.socket, report_fd: int, invocation: str) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    sock.close()
    os.dup2(report_fd, 1)
    os.close(report_fd)
    code = 4
    try:
        from otto.agent.main import agent_main

        code = agent_main(invocation)
    finally:
        sys.stdout.flush()
        os._exit(code)


def _send(sock: socket.socket, message: dict[str, int]) -> None:
    with contextlib.suppress(OSError):  # the orchestrator is gone: nobody to tell
        sock.send(json.dumps(message).encode())


def main() -> int:
    # Loaded once, shared by every fork.
    import otto.agent.main
    import otto.agent.runner
    import otto.objectstore
    import otto.steps.builtins  # noqa: F401

    # The garbage collector would walk (and so copy-on-write) every preloaded object
    # in every fork: leave them out of its sight.
    gc.freeze()
    fd = int(sys.argv[1])
    serve(socket.socket(fileno=fd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
