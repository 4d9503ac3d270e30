"""Loopback ports for the servers tests start, chosen where nothing else can take them.

A port the kernel hands out (bind to port 0) comes from its ephemeral range, the same
range every outgoing connection's local end is drawn from: between choosing it and a
server process binding it, a connection made by a test running in parallel may take it.
So ports here come from below that range, in a block of their own for each xdist worker,
and each is probed before it is given out.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
from pathlib import Path

BASE, BLOCK = 20000, 1500  # worker gwN: BASE + N*BLOCK …; outside pytest: the block after


def _ephemeral() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _block() -> range | None:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 6
    start = BASE + index * BLOCK
    low, high = _ephemeral()
    if start + BLOCK > low and start <= high:
        return None  # no room below the kernel's range here: let the kernel choose
    return range(start, start + BLOCK)


def _candidates() -> itertools.cycle[int] | None:
    block = _block()
    if block is None:
        return None
    first = random.randrange(len(block))  # processes of one worker (a bench's) start apart
    return itertools.cycle([*block[first:], *block[:first]])


_next = _candidates()


def free_port() -> int:
    """A port on 127.0.0.1 nobody listens on, not given out before by this process."""
    if _next is not None:
        for _ in range(BLOCK):
            port = next(_next)
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
