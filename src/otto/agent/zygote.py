"""The agent zygote: one process with Python and the agent already loaded, forking an
agent per context.

Each context still gets an agent process of its own, separate from the
server, but forking a loaded interpreter costs about a millisecond where
starting one costs hundreds: that is what lets a 2-core machine run a
hundred small pipelines a second.

Protocol, over a SOCK_SEQPACKET unix socket (one message each way per event):
the orchestrator sends `{"id"}` with two descriptors attached (SCM_RIGHTS): the
write end of a pipe and a file holding the invocation; the zygote forks, the
child makes that pipe its stdout (the agent's JSON-line reports) and runs the
context the file describes; the zygote answers `{"id", "pid"}`, and
`{"id", "exit"}` when the child ends. The zygote is single-threaded, so forking
it is safe. When the orchestrator goes away (it closed the socket, or died), the
zygote exits and leaves the agents still running to finish: an orchestrator that
shuts down stops its agents itself, and one that died (kill -9 of `otto server`)
re-adopts them when it starts again, their reports kept in their held files
(`otto.orchestrator.adoption`).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import signal
import socket
import sys
import tempfile


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
            data, fds, _, _ = socket.recv_fds(sock, 65536, 2)
        except (ConnectionError, OSError):
            data = b""
        if not data:  # the orchestrator closed its end, or died: its agents live on
            return
        request = json.loads(data)
        report_fd, invocation_fd = fds
        # Until the child is registered: its SIGCHLD, reaped before, would be an exit
        # nobody is told of.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        pid = os.fork()
        if pid == 0:
            _child(sock, report_fd, invocation_fd)
        os.close(report_fd)
        os.close(invocation_fd)
        children[pid] = request["id"]
        _send(sock, {"id": request["id"], "pid": pid})
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})


def _child(sock: socket.socket, report_fd: int, invocation_fd: int) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    sock.close()
    os.dup2(report_fd, 1)
    os.close(report_fd)
    code = 4
    try:
        from otto.agent.main import agent_main

        code = agent_main(f"/dev/fd/{invocation_fd}")
    finally:
        with contextlib.suppress(OSError):  # the orchestrator, reading, may have died
            sys.stdout.flush()
        os._exit(code)


def _send(sock: socket.socket, message: dict[str, int]) -> None:
    with contextlib.suppress(OSError):  # the orchestrator is gone: nobody to tell
        sock.send(json.dumps(message).encode())


# The object-store backends that are not loaded with `otto.objectstore`, by URL scheme.
BACKENDS = {
    "s3": "otto.objectstore.s3",
    "http": "otto.objectstore.client",
    "https": "otto.objectstore.client",
}


def preload(backend: str = "") -> None:
    """Load once what every agent needs (and the object store's backend, by URL scheme),
    to be shared by every fork."""
    import otto.agent.main
    import otto.agent.runner
    import otto.objectstore
    import otto.steps.builtins  # noqa: F401
    from otto.isolation import bubblewrap
    from otto.steps.manifest import standard_manifests

    if backend in BACKENDS:
        importlib.import_module(BACKENDS[backend])
    standard_manifests()  # cached: parsing the YAML would cost each agent more than its step
    bubblewrap.preload()  # what every sandbox hides of /etc, and where bwrap is
    _rehearse()
    # The garbage collector would walk (and so copy-on-write) every preloaded object
    # in every fork: leave them out of its sight.
    gc.freeze()


def _rehearse(times: int = 10) -> None:
    """Run a trivial context here a few times, reports and logs thrown away, so that what
    first runs set up (caches, lazily built validators, interned names, the interpreter's
    specialised bytecode) is in place before the forks: each agent then copies ~200 fewer
    pages on write, about 15 % of its cost."""
    from otto.agent.invocation import Invocation
    from otto.agent.main import agent_main
    from otto.isolation import SandboxSpec
    from otto.model import Context, Step, new_uuid

    stdout = os.dup(1)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="otto-zygote-") as tmp,
            open(os.devnull, "wb") as devnull,
        ):
            os.dup2(devnull.fileno(), 1)
            path = os.path.join(tmp, "invocation.json")
            for _ in range(times):
                context = Context()
                context.steps.append(Step(context=context.uuid, symbol="sh", parameters=["true"]))
                invocation = Invocation(
                    pipeline=new_uuid(),
                    context=context,
                    object_store=os.path.join(tmp, "objects"),
                    workspace_root=os.path.join(tmp, "workspaces"),
                    sandbox=SandboxSpec(kind="none"),  # `sh true`, here, to warm up
                )
                with open(path, "w", encoding="utf-8") as file:
                    file.write(invocation.model_dump_json())
                agent_main(path)
    finally:
        os.dup2(stdout, 1)
        os.close(stdout)


def main() -> int:
    preload(sys.argv[2] if len(sys.argv) > 2 else "")
    fd = int(sys.argv[1])
    serve(socket.socket(fileno=fd))
    return 0


if __name__ == "__main__":
    sys.exit(main())
