"""Adaptive batching of small scoring requests on the service's event loop.

Requests that arrive together are scored as one batch: one feature lookup, one LightGBM call for predict and
SHAP, one prediction-log transaction. A batch is scored once a turn of the event loop (one poll of the
sockets) brings no new request, or after MAX_WAITS turns, or when it reaches `max_rows` customers. A batch is
scored in the batcher's own thread, one batch at a time: the feature lookup (Redis) and the prediction log
(SQLite) wait there, never on the event loop, so a slow or hung dependency does not stop the service from
answering health checks and other requests. Under load many requests arrive while a batch is being scored,
so batches grow with the load; a lone request waits for no one. Each request keeps its own answer and its
own errors: a bad request fails alone.

`max_pending` bounds the queue: beyond it a request is refused at once (QueueFull, a 503 with Retry-After)
instead of waiting behind thousands of others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from crmscore.scoring.online import ScoreJob

Outcome = list[dict[str, Any]] | Exception


class QueueFull(Exception):
    """More requests are waiting to be scored than the batcher holds."""


class RequestBatcher:
    """Collects ScoreJobs and scores them with `score_many` (jobs -> one outcome each) in its own thread, one
    batch at a time, at most `max_rows` customers a batch (a batch of 64 explained rows takes about 20 ms on
    this hardware). `on_batch(jobs, rows)` is called for every batch (metrics)."""

    MAX_WAITS = 4

    def __init__(self, score_many: Callable[[list[ScoreJob]], list[Outcome]], max_rows: int = 64,
                 on_batch: Callable[[int, int], None] | None = None, max_pending: int = 2048) -> None:
        self._score_many = score_many
        self._max_pending = max_pending
        self._busy = False  # a batch is being scored in the thread
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="crmscore-batch")
        self._max_rows = max_rows
        self._on_batch = on_batch
        self._pending: list[tuple[ScoreJob, asyncio.Future]] = []
        self._scheduled = False
        self._seen = 0  # requests pending at the last look
        self._waits = 0  # turns of the loop waited for this batch

    def submit(self, job: ScoreJob) -> asyncio.Future:
        """A future with the job's outcome: its results, or its exception (raised by `await`)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if len(self._pending) >= self._max_pending:
            future.set_exception(QueueFull(f"{len(self._pending):,} requests are waiting to be scored"))
            return future
        self._pending.append((job, future))
        if not self._scheduled and not self._busy:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        rows_pending = sum(len(job.customers) for job, _ in self._pending)
        if len(self._pending) > self._seen and rows_pending < self._max_rows and self._waits < self.MAX_WAITS:
            # requests came in during the last turn: look once more (one more poll of the sockets, microseconds)
            self._seen = len(self._pending)
            self._waits += 1
            loop.call_soon(self._flush)
            return
        self._scheduled = False
        self._waits = 0
        take = rows = 0
        for job, _ in self._pending:
            if take and rows + len(job.customers) > self._max_rows:
                break
            take += 1
            rows += len(job.customers)
        batch, self._pending = self._pending[:take], self._pending[take:]
        self._seen = len(self._pending)
        live = [(job, fut) for job, fut in batch if not fut.cancelled()]  # a client that gave up
        if not live:
            self._next(loop)
            return
        self._busy = True
        done = loop.run_in_executor(self._thread, self._score, [job for job, _ in live])
        done.add_done_callback(lambda f: self._deliver(loop, live, f.result()))

    def _score(self, jobs: list[ScoreJob]) -> list[Outcome]:
        try:
            return self._score_many(jobs)
        except Exception as exc:  # noqa: BLE001  (e.g. the prediction log cannot be written: every job fails)
            return [exc] * len(jobs)

    def _deliver(self, loop: asyncio.AbstractEventLoop, live: list[tuple[ScoreJob, asyncio.Future]],
                 outcomes: list[Outcome]) -> None:
        self._busy = False
        if self._on_batch is not None:
            self._on_batch(len(live), sum(len(job.customers) for job, _ in live))
        for (_, fut), outcome in zip(live, outcomes):
            if fut.cancelled():
                continue
            if isinstance(outcome, Exception):
                fut.set_exception(outcome)
            else:
                fut.set_result(outcome)
        self._next(loop)

    def _next(self, loop: asyncio.AbstractEventLoop) -> None:
        """The next batch from what waited meanwhile (it grew while the last one was scored)."""
        if self._pending and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
