"""Signed webhook delivery with Meta's retry behaviour, run by a background worker.

Like Meta, only an HTTP 200 counts as delivered: any other status, a timeout or a refused
connection is retried with exponential backoff (bounded by the config). Jobs wait in a heap
ordered by due time on the emulator clock, so a fake clock makes delays and retries
deterministic: advance it, then `settle()`.
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
from whatsray.whatsapp.emulator.config import EmulatorConfig
from whatsray.whatsapp.emulator.state import EmulatorState, WebhookAttempt
from whatsray.whatsapp.signature import SIGNATURE_HEADER, sign

log = logging.getLogger("whatsray.emulator")


@dataclass(order=True)
class WebhookJob:
    due: float
    job_id: int
    kind: str = field(compare=False)
    label: str = field(compare=False)
    body: bytes = field(compare=False, repr=False)
    attempts: int = field(default=0, compare=False)


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
        self._webhook_url = webhook_url
        self._ids = itertools.count(1)
        self._heap: list[WebhookJob] = []
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

    def schedule(self, job: WebhookJob) -> None:
        """Queue a job for the background worker (delivered once its due time has come)."""
        heapq.heappush(self._heap, job)
        self._ensure_worker()
        self._wake.set()

    async def deliver_now(self, job: WebhookJob, *, wait: bool = False) -> WebhookAttempt:
        """Attempt now, in the caller's task. On failure, retry in the background, or here
        (sleeping on the emulator clock) when `wait` is set. Returns the last attempt."""
        record = await self._attempt(job)
        while not record.delivered and not record.gave_up:
            delay = self._config.backoff(job.attempts)
            if not wait:
                job.due = self._clock.now() + delay
                self.schedule(job)
                break
            await self._clock.sleep(delay)
            record = await self._attempt(job)
        return record

    async def settle(self, max_wait: float = 30.0) -> None:
        """Return once no delivery is running and none is due at the current clock time."""
        self._ensure_worker()
        async with asyncio.timeout(max_wait):
            while self._in_flight or (self._heap and self._heap[0].due <= self._clock.now()):
                progress = self._progress
                await progress.wait()

    @property
    def pending(self) -> int:
        return len(self._heap) + len(self._in_flight)

    def clear(self) -> None:
        """Drop queued jobs and cancel running ones (used by reset)."""
        self._heap.clear()
        for task in self._in_flight:
            task.cancel()
        self._signal_progress()

    # --- internals -------------------------------------------------------------------------

    def _signal_progress(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            if self._heap and self._heap[0].due <= self._clock.now():
                job = heapq.heappop(self._heap)
                await self._slots.acquire()
                task = asyncio.get_running_loop().create_task(self._run_job(job))
                self._in_flight.add(task)
                continue
            self._signal_progress()
            waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
            if self._heap:
                waits.append(asyncio.ensure_future(self._sleep_until(self._heap[0].due)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()

    async def _sleep_until(self, due: float) -> None:
        # The delay is computed when this starts running, not when it is scheduled: the clock
        # may have been advanced in between.
        await self._clock.sleep(due - self._clock.now())

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
                response = await self._client().post(
                    url, content=job.body, headers=headers, timeout=self._config.delivery_timeout_s
                )
                status_code = response.status_code
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
        )
        self._state.webhooks.append(record)
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
