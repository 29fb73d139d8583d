"""Signed webhook delivery with Meta's retry behaviour and status batching, run by a background
worker.

Like Meta, only an HTTP 200 counts as delivered: any other status, a timeout or a refused
connection is retried with exponential backoff (bounded by the config). Jobs wait in a heap
ordered by due time on the emulator clock, so a fake clock makes delays and retries
deterministic: advance it, then `settle()`.

Statuses wait unbuilt in a heap of their own. When the first one is due, the worker waits
`status_batch_window_s` (real time, so a batch also forms under a fake clock) and then puts
every status due by then, at most `status_batch_max`, in one body grouped the way Meta batches
them. From then on the batch is one job: signed once, retried whole. Plain `http://` webhook
URLs are POSTed with the lean client of `webhook_http` unless a client was injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from whatsray.whatsapp.emulator.clock import Clock
from whatsray.whatsapp.emulator.config import BusinessNumber, EmulatorConfig
from whatsray.whatsapp.emulator.state import EmulatorState, WebhookAttempt
from whatsray.whatsapp.emulator.webhook_http import WebhookPoster
from whatsray.whatsapp.emulator.webhook_payloads import build_statuses_payload, encode_webhook_body
from whatsray.whatsapp.signature import SIGNATURE_HEADER, sign

log = logging.getLogger("whatsray.emulator")


@dataclass(frozen=True, slots=True)
class StatusItem:
    """One status waiting for its batch: the number it is about and its `statuses` element."""

    number: BusinessNumber
    entry: dict[str, Any]


@dataclass(order=True)
class WebhookJob:
    due: float
    job_id: int
    kind: str = field(compare=False)
    label: str = field(compare=False)
    body: bytes = field(compare=False, repr=False)
    attempts: int = field(default=0, compare=False)
    events: int = field(default=1, compare=False)
    # A status not yet in a body; None once the body is built.
    status: StatusItem | None = field(default=None, compare=False, repr=False)


class WebhookDelivery:
    def __init__(
        self,
        config: EmulatorConfig,
        clock: Clock,
        state: EmulatorState,
        *,
        http: httpx.AsyncClient | None,
        webhook_url: Callable[[], str | None],
    ) -> None:
        self._config = config
        self._clock = clock
        self._state = state
        self._http = http
        self._owns_http = http is None
        self._poster = WebhookPoster() if http is None else None
        self._webhook_url = webhook_url
        self._ids = itertools.count(1)
        self._heap: list[WebhookJob] = []  # jobs with a body (inbound retries, batch retries)
        self._statuses: list[WebhookJob] = []  # statuses waiting for a batch
        self._batch_window = config.status_batch_window_s
        self._batch_max = config.status_batch_max if self._batch_window > 0 else 1
        self._flush_at: float | None = None  # loop time at which the forming batch goes out
        self._waiting = False  # the worker is idle, waiting for `_wait_until` or a wake-up
        self._wait_until: float | None = None
        self._direct = 0  # attempts running in a caller's task (inbound messages)
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(config.delivery_concurrency)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._ensure_worker()

    async def stop(self) -> None:
        tasks = [*self._in_flight, *([self._worker] if self._worker else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._worker = None
        if self._poster is not None:
            await self._poster.aclose()
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._config.delivery_timeout_s)
        return self._http

    # --- public operations -----------------------------------------------------------------

    def new_job(self, kind: str, label: str, body: bytes, *, delay: float = 0.0) -> WebhookJob:
        return WebhookJob(self._clock.now() + delay, next(self._ids), kind, label, body)

    def schedule_status(
        self, item: StatusItem, label: str, *, delay: float = 0.0, copies: int = 1
    ) -> None:
        """Queue a status for the next batch once `delay` has passed. Copies share the entry,
        and a batch never holds the same entry twice: a duplicate is a second POST, as when
        Meta delivers a webhook again."""
        for _ in range(copies):
            job = WebhookJob(self._clock.now() + delay, next(self._ids), "status", label, b"")
            job.status = item
            self.schedule(job)

    def schedule(self, job: WebhookJob) -> None:
        """Queue a job for the background worker (delivered once its due time has come)."""
        heapq.heappush(self._statuses if job.status is not None else self._heap, job)
        self._ensure_worker()
        if self._needs_wake(job):
            self._wake.set()

    async def deliver_now(self, job: WebhookJob, *, wait: bool = False) -> WebhookAttempt:
        """Attempt now, in the caller's task. On failure, retry in the background, or here
        (sleeping on the emulator clock) when `wait` is set. Returns the last attempt."""
        record = await self._attempt_direct(job)
        while not record.delivered and not record.gave_up:
            delay = self._config.backoff(job.attempts)
            if not wait:
                job.due = self._clock.now() + delay
                self.schedule(job)
                break
            await self._clock.sleep(delay)
            record = await self._attempt_direct(job)
        return record

    async def settle(self, max_wait: float = 30.0) -> None:
        """Return once no delivery is running and none is due at the current clock time
        (a forming status batch is waited for: it goes out within its window)."""
        self._ensure_worker()
        self._wake.set()  # the clock may have been moved by hand: look again
        async with asyncio.timeout(max_wait):
            while self._in_flight or self._due(self._heap) or self._due(self._statuses):
                progress = self._progress
                await progress.wait()

    @property
    def pending(self) -> int:
        """Webhook jobs not finished: queued (due or not), forming a batch, or being sent."""
        return len(self._heap) + len(self._statuses) + len(self._in_flight) + self._direct

    def pending_counts(self) -> dict[str, int]:
        """`pending` split up; cheap enough to poll (`GET /emulator/webhooks/pending`)."""
        due = self._due(self._heap) + self._due(self._statuses)
        return {
            "pending": self.pending,
            "due": due,
            "scheduled": len(self._heap) + len(self._statuses) - due,
            "in_flight": len(self._in_flight) + self._direct,
        }

    def clear(self) -> None:
        """Drop queued jobs and cancel running ones (used by reset)."""
        self._heap.clear()
        self._statuses.clear()
        self._flush_at = None
        for task in self._in_flight:
            task.cancel()
        self._signal_progress()

    # --- internals -------------------------------------------------------------------------

    def _due(self, heap: list[WebhookJob]) -> int:
        if not heap or heap[0].due > self._clock.now():
            return 0
        now = self._clock.now()
        return sum(1 for job in heap if job.due <= now)

    def _needs_wake(self, job: WebhookJob) -> bool:
        # Waking the worker costs an iteration per job; most jobs come due after its next
        # wake-up anyway (statuses during a forming batch always do).
        if not self._waiting:
            return True
        if job.status is not None and self._flush_at is not None:
            return False
        return self._wait_until is None or job.due < self._wait_until

    def _signal_progress(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = self._clock.now()
            if self._heap and self._heap[0].due <= now:
                await self._launch(heapq.heappop(self._heap))
                continue
            if self._statuses and self._statuses[0].due <= now:
                if self._flush_at is None:
                    self._flush_at = loop.time() + self._batch_window
                if loop.time() >= self._flush_at:
                    batch = self._take_batch(now)
                    # A full batch with more due behind it: the next one goes out at once.
                    full = batch.events >= self._batch_max and self._due(self._statuses) > 0
                    self._flush_at = loop.time() if full else None
                    await self._launch(batch)
                    continue
            self._signal_progress()
            await self._idle(loop)

    async def _idle(self, loop: asyncio.AbstractEventLoop) -> None:
        targets = [self._heap[0].due] if self._heap else []
        if self._statuses and self._flush_at is None:
            targets.append(self._statuses[0].due)
        self._wait_until = min(targets) if targets else None
        waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
        if self._wait_until is not None:
            waits.append(asyncio.ensure_future(self._sleep_until(self._wait_until)))
        if self._flush_at is not None:
            waits.append(asyncio.ensure_future(asyncio.sleep(self._flush_at - loop.time())))
        self._waiting = True
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._waiting = False
            for waiter in waits:
                waiter.cancel()

    async def _sleep_until(self, due: float) -> None:
        # The delay is computed when this starts running, not when it is scheduled: the clock
        # may have been advanced in between.
        await self._clock.sleep(due - self._clock.now())

    def _take_batch(self, now: float) -> WebhookJob:
        """Pop the due statuses (up to the batch size) and build their one body."""
        first = heapq.heappop(self._statuses)
        batch = [first]
        seen = {_entry_key(first)}
        while len(batch) < self._batch_max and self._statuses and self._statuses[0].due <= now:
            key = _entry_key(self._statuses[0])
            if key in seen:
                break  # the duplicate goes in the next body
            seen.add(key)
            batch.append(heapq.heappop(self._statuses))
        items = [(job.status.number, job.status.entry) for job in batch if job.status]
        body = encode_webhook_body(build_statuses_payload(items))
        if len(batch) == 1:
            first.body, first.status = body, None
            return first
        label = f"{first.label} (+{len(batch) - 1} more)"
        return WebhookJob(now, next(self._ids), "status", label, body, events=len(batch))

    async def _launch(self, job: WebhookJob) -> None:
        await self._slots.acquire()
        task = asyncio.get_running_loop().create_task(self._run_job(job))
        self._in_flight.add(task)

    async def _run_job(self, job: WebhookJob) -> None:
        try:
            record = await self._attempt(job)
            if not record.delivered and not record.gave_up:
                job.due = self._clock.now() + self._config.backoff(job.attempts)
                heapq.heappush(self._heap, job)
                self._wake.set()
        finally:
            self._slots.release()
            task = asyncio.current_task()
            if task is not None:
                self._in_flight.discard(task)
            self._signal_progress()

    async def _attempt_direct(self, job: WebhookJob) -> WebhookAttempt:
        self._direct += 1
        try:
            return await self._attempt(job)
        finally:
            self._direct -= 1

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        timeout = self._config.delivery_timeout_s
        if self._poster is not None and self._poster.handles(url):
            return await self._poster.post(url, body, headers, time_limit=timeout)
        response = await self._client().post(url, content=body, headers=headers, timeout=timeout)
        return response.status_code

    async def _attempt(self, job: WebhookJob) -> WebhookAttempt:
        job.attempts += 1
        url = self._webhook_url()
        signature = sign(self._config.app_secret, job.body)
        status_code: int | None = None
        error: str | None = None
        if url is None:
            error = "no webhook_url configured"
        else:
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: signature,
                "User-Agent": "facebookexternalua",
            }
            try:
                status_code = await self._post(url, job.body, headers)
            except Exception as exc:  # any failure to deliver is a failed attempt, as at Meta
                error = f"{type(exc).__name__}: {exc}"
        delivered = status_code == 200
        record = WebhookAttempt(
            seq=self._state.next_seq(),
            time=self._clock.now(),
            job_id=job.job_id,
            kind=job.kind,
            label=job.label,
            url=url or "",
            attempt=job.attempts,
            status_code=status_code,
            error=error,
            delivered=delivered,
            gave_up=not delivered and job.attempts >= self._config.delivery_max_attempts,
            body=job.body,
            signature=signature,
            events=job.events,
        )
        self._state.webhooks.append(record)
        if log.isEnabledFor(logging.INFO):  # the line costs more than the check
            outcome = "ok" if delivered else (error or f"HTTP {status_code}")
            suffix = " (gave up)" if record.gave_up else ""
            log.info(
                "webhook %-8s %s -> %s [attempt %d]%s",
                job.kind,
                job.label,
                outcome,
                job.attempts,
                suffix,
            )
        return record


def _entry_key(job: WebhookJob) -> int:
    # Copies of a status share one entry object (`schedule_status`): identity tells a duplicate.
    return id(job.status.entry) if job.status is not None else id(job)
