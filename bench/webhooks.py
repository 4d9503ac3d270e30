"""GitHub push webhooks against a real `otto server` (started here): acknowledgements.

A real bare repository (file://) holds one commit per push, each with an
Ottofile (`sh 'true'`); a project points at it. 1,000 signed push
deliveries go to `POST /v1/webhooks/github` from a few concurrent senders,
as GitHub would send them: 80 % valid pushes of distinct commits, 10 %
redeliveries of one of those (same X-GitHub-Delivery), 10 % pushes of other
commits with a wrong signature. Checked: every valid push becomes exactly one
pipeline, at its commit, and no other commit does; redeliveries are answered
200 `duplicate`, bad signatures 401. Printed: acknowledgements per second,
p50/p99 acknowledgement latency (target p99 <= 100 ms), and how fast the
background worker turned the pushes into pipelines (Ottofile fetched from
the repository at each pushed SHA, parsed, created).

The local orchestrator is off unless `--execute`: the runs are created, not
run, so the figures are those of the webhook path alone.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from serverkit import running_server  # noqa: E402

SECRET = "bench-webhook-secret"
FULL_NAME = "bench/app"
OTTOFILE = "pipeline {{\n  steps {{ sh 'true' }}\n}}\n// push {n}\n"


def make_repository(bare: Path, count: int) -> list[str]:
    """`count` commits on main, each with an Ottofile, via one `git fast-import`."""
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    stream = []
    for n in range(1, count + 1):
        text = OTTOFILE.format(n=n).encode()
        message = f"push {n}".encode()
        stream.append(
            b"commit refs/heads/main\nmark :%d\ncommitter Bench <bench@example.com> %d +0000\n"
            % (n, 1_700_000_000 + n)
        )
        stream.append(b"data %d\n%s\n" % (len(message), message))
        if n > 1:
            stream.append(b"from :%d\n" % (n - 1))
        stream.append(b"M 644 inline Ottofile\ndata %d\n%s\n" % (len(text), text))
    marks = bare / "marks"
    subprocess.run(
        ["git", f"--git-dir={bare}", "fast-import", "--quiet", f"--export-marks={marks}"],
        input=b"".join(stream),
        check=True,
    )
    by_mark = dict(line.split() for line in marks.read_text().splitlines())
    return [by_mark[f":{n}"] for n in range(1, count + 1)]


def payload(clone_url: str, sha: str, before: str, n: int) -> bytes:
    """A push event in GitHub's documented shape."""
    return json.dumps(
        {
            "ref": "refs/heads/main",
            "before": before,
            "after": sha,
            "created": False,
            "deleted": False,
            "forced": False,
            "compare": f"https://github.com/{FULL_NAME}/compare/{before[:12]}...{sha[:12]}",
            "commits": [{"id": sha, "message": f"push {n}", "distinct": True}],
            "head_commit": {"id": sha, "message": f"push {n}"},
            "repository": {
                "name": "app",
                "full_name": FULL_NAME,
                "clone_url": clone_url,
                "html_url": f"https://github.com/{FULL_NAME}",
                "default_branch": "main",
            },
            "pusher": {"name": "bench", "email": "bench@example.com"},
            "sender": {"login": "bench"},
        }
    ).encode()


def signed(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def plan(
    clone_url: str, shas: list[str], total: int, rng: random.Random
) -> tuple[list[tuple[str, str, bytes, str]], list[str], list[str]]:
    """(kind, delivery id, body, signature) in sending order; the valid and the bad SHAs."""
    bad_count = dup_count = total // 10
    valid_count = total - bad_count - dup_count
    valid, bad = shas[:valid_count], shas[valid_count : valid_count + bad_count]
    sends = []
    for i, sha in enumerate(valid):
        body = payload(clone_url, sha, shas[i - 1] if i else "0" * 40, i + 1)
        sends.append(("valid", str(uuid.uuid4()), body, signed(body, SECRET)))
    for j, sha in enumerate(bad):
        body = payload(clone_url, sha, "0" * 40, valid_count + j + 1)
        sends.append(("bad", str(uuid.uuid4()), body, signed(body, "not-the-secret")))
    rng.shuffle(sends)
    for original in rng.sample([s for s in sends if s[0] == "valid"], dup_count):
        later = sends.index(original) + 1
        at = rng.randint(later, len(sends))
        sends.insert(at, ("duplicate", *original[1:]))  # a redelivery, after the original
    return sends, valid, bad


def send_all(url: str, sends: list[tuple[str, str, bytes, str]], senders: int) -> list[tuple]:
    """Send from `senders` threads taking from one queue;
    (kind, HTTP status, answer, seconds, delivery id) each."""
    results: list[tuple] = []
    lock = threading.Lock()
    index = iter(range(len(sends)))

    def sender() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while True:
                with lock:
                    i = next(index, None)
                if i is None:
                    return
                kind, delivery, body, signature = sends[i]
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "GitHub-Hookshot/bench",
                    "X-GitHub-Event": "push",
                    "X-GitHub-Delivery": delivery,
                    "X-Hub-Signature-256": signature,
                }
                started = time.perf_counter()
                answer = client.post("/v1/webhooks/github", content=body, headers=headers)
                took = time.perf_counter() - started
                with lock:
                    results.append((kind, answer.status_code, answer.json(), took, delivery))

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def all_pipelines(client: httpx.Client) -> list[dict]:
    found, cursor = [], None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/pipelines", params=params).json()
        found += page["pipelines"]
        cursor = page.get("next_cursor")
        if not cursor:
            return found


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--senders", type=int, default=8, help="concurrent senders")
    parser.add_argument("--execute", action="store_true", help="also run the pipelines")
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "app.git"
        commits = args.deliveries - args.deliveries // 10
        started = time.perf_counter()
        shas = make_repository(bare, commits)
        print(f"repository: {commits} commits in {time.perf_counter() - started:.1f} s")
        clone_url = bare.as_uri()
        home = Path(tmp) / "home"
        (home / "projects.d").mkdir(parents=True)
        (home / "projects.d" / "app.yml").write_text(
            f"source:\n  url: {clone_url}\nsecret_env: BENCH_SECRET\ncheckout: false\n"
        )
        env = {"BENCH_SECRET": SECRET}
        if not args.execute:
            env["OTTO_LOCAL_ORCHESTRATOR"] = "0"
        sends, valid, bad = plan(clone_url, shas, args.deliveries, rng)
        with running_server(home, **env) as server, server.client() as client:
            began = time.perf_counter()
            results = send_all(server.url, sends, args.senders)
            elapsed = time.perf_counter() - began
            deadline = time.monotonic() + 600
            while len(all_pipelines(client)) < len(valid) and time.monotonic() < deadline:
                time.sleep(0.5)
            created = time.perf_counter() - began
            time.sleep(1.0)  # room for wrong extra pipelines to appear
            runs = all_pipelines(client)
    latencies = [r[3] for r in results]
    answers: dict[str, list[tuple[int, bool]]] = {}
    for r in results:  # an original and its redelivery may race: either may come first
        answers.setdefault(r[4], []).append((r[1], bool(r[2].get("duplicate"))))
    once, twice = [(202, False)], [(200, True), (202, False)]
    problems = [] if len(results) == len(sends) else ["not every delivery was answered"]
    for r in results:
        got = sorted(answers[r[4]])
        if r[0] == "bad" and got != [(401, False)]:
            problems.append(f"bad signature answered {got}")
        elif r[0] != "bad" and got not in (once, twice):
            problems.append(f"delivery {r[4]} answered {got}")
    per_sha = Counter(r["sha"] for r in runs)
    if set(per_sha) != set(valid) or any(n != 1 for n in per_sha.values()):
        extra = len(set(per_sha) - set(valid))
        problems.append(
            f"{len(runs)} pipelines for {len(per_sha)} commits ({extra} not valid pushes, "
            f"{sum(n > 1 for n in per_sha.values())} twice); expected one per valid push"
        )
    errors = sum(r["status"] == "Error" for r in runs)
    print(
        f"{len(results)} deliveries ({len(valid)} valid, {args.deliveries // 10} redeliveries, "
        f"{len(bad)} bad signatures) from {args.senders} senders in {elapsed:.2f} s: "
        f"{len(results) / elapsed:.0f} acknowledgements/s"
    )
    print(
        f"acknowledgement latency: p50 {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms "
        "(target p99 <= 100 ms)"
    )
    for kind in ("valid", "duplicate", "bad"):
        mine = [r[3] for r in results if r[0] == kind]
        print(f"  {kind:9}  p50 {statistics.median(mine) * 1000:6.1f} ms   "
              f"p99 {percentile(mine, 99) * 1000:6.1f} ms")  # fmt: skip
    print(
        f"pipelines: {len(runs)} created for {len(valid)} valid pushes, all within "
        f"{created:.1f} s of the first delivery ({len(runs) / created:.0f} pushes/s through "
        f"fetch, parse and create); {errors} ended in Error"
    )
    for problem in problems:
        print(f"FAILED: {problem}")
    return 1 if problems or errors else 0


if __name__ == "__main__":
    sys.exit(main())
