"""Sends the outbox's due rows: a few lanes at once, each lane's rows in order.

An answer in 2xx delivers a row. Anything else (no connection, a timeout, a
refusal) is tried again after the next back-off delay, until the delays are
used up and the row is `failed`; a commit status GitHub refuses for good
(422: a bad SHA) fails at once. When a row of a lane fails, the rest of that
lane waits with it rather than hammering a subscriber that is down.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import httpx

from otto.webhooks.mirror import without_credentials
from otto.webhooks.outbox import Delivery, Outbox
from otto.webhooks.statuses import status_headers, worth_retrying
from otto.webhooks.subscribers import webhook_headers

log = logging.getLogger("otto.webhooks.sender")

BACKOFF = (1.0, 5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)  # ~1.7 h of retries
PRUNE_AFTER = 7 * 86400.0  # delivered rows are kept a week


class Sender(threading.Thread):
    def __init__(
        self,
        outbox: Outbox,
        backoff: tuple[float, ...] = BACKOFF,
        workers: int = 4,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(name="webhook-sender", daemon=True)
        self.outbox, self.backoff = outbox, backoff
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, connect=5.0))
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="webhook-send")
        self.workers = workers
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._pruned = 0.0
        self._soonest = float("inf")  # the earliest retry this process scheduled

    def run(self) -> None:
        while not self.stopping.is_set():
            self.wake.clear()
            try:
                self._round()
            except Exception:  # the database is unwell: the rows stay due
                log.exception("claiming outbound requests failed")
                self.stopping.wait(1.0)
            self.wake.wait(self._idle())

    def _idle(self) -> float:
        """How long to wait for a wake-up: until the next retry, at most half a second
        (rows other replicas add or give back are found by then)."""
        now = time.time()
        with self._lock:
            if self._soonest <= now:
                self._soonest = float("inf")
                return 0.0
            return min(0.5, self._soonest - now)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.join(15)
        self.pool.shutdown(wait=True)  # lanes not begun give their claimed rows back at once
        self.client.close()

    def _round(self) -> None:
        now = time.time()
        if now - self._pruned > 3600:
            self._pruned = now
            self.outbox.prune(now - PRUNE_AFTER)
        with self._lock:
            busy = set(self._busy)
        if len(busy) >= self.workers * 4:
            return  # enough queued already
        lanes: dict[str, list[Delivery]] = defaultdict(list)
        for row in self.outbox.claim(now, busy):
            lanes[row.lane].append(row)
        for lane, rows in lanes.items():
            with self._lock:
                self._busy.add(lane)
            self.pool.submit(self._lane, lane, rows)

    def _lane(self, lane: str, rows: list[Delivery]) -> None:
        try:
            for i, row in enumerate(rows):
                if self.stopping.is_set():
                    self.outbox.release([r.id for r in rows[i:]], time.time())
                    return
                retry_at = self.send(row)
                if retry_at is not None and i + 1 < len(rows):
                    self.outbox.release([r.id for r in rows[i + 1 :]], retry_at)
                    return
        except Exception:
            log.exception("sending to %s failed", lane)
        finally:
            with self._lock:
                self._busy.discard(lane)
            self.wake.set()

    def send(self, row: Delivery) -> float | None:
        """One attempt; when it will be tried again (None: delivered or given up)."""
        attempts = row.attempts + 1
        code, problem, again = self._attempt(row)
        if problem is None:
            self.outbox.finish(row.id, attempts, code, None, None, delivered=True)
            return None
        retry_at = None
        if again and attempts <= len(self.backoff) and not self.stopping.is_set():
            retry_at = time.time() + self.backoff[attempts - 1]
        elif again and self.stopping.is_set():
            retry_at = time.time()  # interrupted by a shutdown: not the request's fault
        if retry_at is not None:
            with self._lock:
                self._soonest = min(self._soonest, retry_at)
        self.outbox.finish(row.id, attempts, code, problem, retry_at, delivered=False)
        where = f"{row.event} to {without_credentials(row.url)}"
        if retry_at is None:
            log.warning("delivery %s (%s) failed for good: %s", row.id, where, problem)
        else:
            log.info("delivery %s (%s): %s; again in %.0f s", row.id, where, problem,
                     retry_at - time.time())  # fmt: skip
        return retry_at

    def _attempt(self, row: Delivery) -> tuple[int | None, str | None, bool]:
        """(HTTP status, what went wrong or None, worth trying again)."""
        body = row.body.encode()
        secret = os.environ.get(row.auth_env) if row.auth_env else None
        if row.kind == "webhook":
            if not secret:
                return None, f"the secret variable {row.auth_env} is not set", False
            timestamp = str(int(time.time()))
            headers = webhook_headers(row.id, secret.encode(), timestamp, body)
        else:
            headers = status_headers(secret)
        try:
            answer = self.client.post(row.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, (str(exc) or type(exc).__name__)[:500], True
        if answer.status_code < 300:
            return answer.status_code, None, False
        again = row.kind == "webhook" or worth_retrying(answer.status_code)
        return answer.status_code, f"HTTP {answer.status_code}: {answer.text[:300]}", again
