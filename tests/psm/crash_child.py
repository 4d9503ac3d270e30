"""The crash-test child: create pipelines and drive them until killed (kill -9).

    python crash_child.py STORE_URL COUNT THREADS

Prints, each line flushed once its write has returned (so is durable):
`created UUID`, `lease PIPELINE CONTEXT ORCHESTRATOR EPOCH EXPIRES`, `act N`.
"""

from __future__ import annotations

import random
import sys
import threading

from psmkit import make_pipeline, step_once

from otto.psm import Lease, PipelineStateMachine, open_store

MODES = ["Linear", "Parallel", "Fanout"]
_print = threading.Lock()


def say(*words: object) -> None:
    with _print:
        print(*words, flush=True)


def main() -> None:
    url, count, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    psm = PipelineStateMachine(open_store(url), lease_seconds=3600)
    uuids = []
    for i in range(count):
        model = make_pipeline((MODES[i % 3], [2, 1, 2]), (MODES[(i + 1) % 3], [1, 1]))
        uuids.append(psm.create(model, repo="crash", sha=f"{i:040x}").uuid)
        say("created", uuids[-1])
    acts = iter(range(1, 10**9))

    def on_lease(lease: Lease) -> None:
        say("lease", lease.pipeline, lease.context, lease.orchestrator, lease.epoch,
            repr(lease.expires_at))  # fmt: skip

    def drive(t: int) -> None:
        rng = random.Random(t)
        mine = uuids[t::threads]
        while mine:
            for uuid in list(mine):
                if not step_once(psm, uuid, rng, f"orch-{t}", on_lease=on_lease):
                    mine.remove(uuid)
                with _print:
                    print("act", next(acts), flush=True)

    workers = [threading.Thread(target=drive, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    say("done")


if __name__ == "__main__":
    main()
