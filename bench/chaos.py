"""The chaos hour: a production layout killed at random, and whether anything was lost
or run twice.

Two `otto server` replicas on one throw-away PostgreSQL, the object store on an S3
server (moto), two remote orchestrators (`--server URL1,URL2`). A driver submits
`--pipelines` runs of mixed shapes (Linear, Parallel, Fanout, a failing stage, an
approval gate it approves, a stage with `retry_on = ''`) over the run, while a chaos
thread kill -9s a random server replica, orchestrator or agent every `--kill-every`
seconds (a random pause in that range) and restarts it. Then, with every process
alive and every run ended, it checks the invariants (tests/chaoskit.py says which)
and prints a table; exit 1 if any fails. The short version runs in the test suite
(tests/chaos).

    .venv/bin/python bench/chaos.py --minutes 5 --pipelines 60
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from chaoskit import Plan, run, s3_objects  # noqa: E402
from motokit import bucket_maker, running_moto  # noqa: E402
from pgkit import throwaway_postgres  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the chaos lasts")
    parser.add_argument("--pipelines", type=int, default=500)
    parser.add_argument(
        "--kill-every", type=float, nargs=2, default=(5.0, 15.0), metavar=("MIN", "MAX"),
        help="seconds between kills (a random pause in that range)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="a directory to keep the logs and ledger in")
    args = parser.parse_args()
    plan = Plan(args.pipelines, args.minutes * 60, tuple(args.kill_every), seed=args.seed)
    with (
        tempfile.TemporaryDirectory(prefix="otto-chaos-") as tmp,
        throwaway_postgres() as dsn,
        running_moto() as endpoint,
    ):
        bucket = bucket_maker(endpoint)()
        objects = s3_objects(endpoint, bucket)
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        verdict = run(root, dsn, objects, plan)
    print(verdict.table())
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
