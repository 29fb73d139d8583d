"""The outbox for one business number: ordered, rate-limited, exactly-once sends with retries.

Exactly once (see docs/outbox.md): every message is recorded in the ledger under a stable,
caller-chosen `outbound_id` before anything is sent, and the wamid is stored after Meta accepted
it. Submitting the same ids again (a retried turn, a restarted outbox) finds the record and sends
nothing once it is "sent" or later. A "pending" record that may have been attempted is the one
ambiguous case (attempted in this process, or found pending in the ledger by a restarted outbox:
the previous one may have died after the request reached Meta): we wait up to
`ambiguous_grace_s` for a status webhook carrying the id as `biz_opaque_callback_data`, and send
again only if none came.

In memory (docs/outbox.md, "In memory"): the live outbox keeps its records and the chats' windows
(`OutboxMemory`), so a send reads nothing from the store; wamids and status webhooks are written
behind, many in one store call (`write_behind`), and a status is acknowledged only once written.

Order: the parts of one `submit` go out one after another, and submits to the same recipient
never interleave (one lane per recipient, FIFO); different recipients run concurrently.

Mixed in: status webhooks (`statuses.py`), the 24-hour window's template fallbacks
(`fallbacks.py`), and the background sends, `dispatch` and the sweeps (`background.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from whatsray import metrics
from whatsray.batching import Batcher
from whatsray.observability.logs import IdValue, log_ids
from whatsray.outbox.background import BACKGROUND_RETRY, BackgroundSends
from whatsray.outbox.fallbacks import WindowFallbacks, template_outbound_id
from whatsray.outbox.lanes import Lane, recipient_key
from whatsray.outbox.ledger import (
    OutboundItem,
    OutboundLedger,
    OutboundRecord,
    SendResult,
    StatusWrite,
    record_log_ids,
)
from whatsray.outbox.memory import OutboxMemory
from whatsray.outbox.rate_limits import SendRateLimiter
from whatsray.outbox.retry import RetryPolicy, is_ambiguous
from whatsray.outbox.snapshot import OutboxStatus
from whatsray.outbox.statuses import RE_ENGAGEMENT_CODE, StatusWebhooks
from whatsray.outbox.templates import EMPTY_TEMPLATES, TemplatesConfig
from whatsray.outbox.window import WindowLookup, is_template_body
from whatsray.retries import Backoff
from whatsray.whatsapp.errors import MessageValidationError, ReEngagementError, WhatsAppError
from whatsray.whatsapp.graph_client import GraphClient
from whatsray.whatsapp.messages import MarkAsRead, Message, validate_send_body

__all__ = [
    "REPLAY_PURPOSE",
    "Outbox",
    "OutboxClosedError",
    "recipient_key",
    "replay_outbound_id",
    "template_outbound_id",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

REPLAY_PURPOSE = "dead_letter_replay"


class OutboxClosedError(RuntimeError):
    """`submit` or `replay_dead_letter` after `close()`."""


def replay_outbound_id(outbound_id: str, dead_letter_id: str) -> str:
    """The id a replay of this dead letter is sent under: derived, so replaying twice dedupes."""
    return f"{outbound_id}~replay:{dead_letter_id}"


async def _parked() -> None:
    """Wait until cancelled (an outbox handing over closes, which cancels its sends)."""
    await asyncio.Event().wait()


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return f"{type(exc).__name__}({code})" if code is not None else type(exc).__name__


class Outbox(StatusWebhooks, WindowFallbacks, BackgroundSends):
    """Sends one business number's messages. Plain async class; a Ray actor wraps it later."""

    def __init__(
        self,
        phone_number_id: str,
        graph: GraphClient,
        ledger: OutboundLedger,
        *,
        throughput_mps: float = 80.0,
        pair_burst: int = 45,
        pair_refill_s: float = 6.0,
        retry: RetryPolicy | None = None,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        window_lookup: WindowLookup | None = None,
        templates: TemplatesConfig | None = None,
        ambiguous_grace_s: float = 10.0,
        grace_poll_s: float = 0.5,
        rng: random.Random | None = None,
        write_linger_s: float = 0.1,
        max_requests: int = 64,
        background_retry: Backoff = BACKGROUND_RETRY,
        background_deadline_s: float = 600.0,
    ) -> None:
        self.phone_number_id = phone_number_id
        self._graph = graph
        self._ledger = ledger
        self._retry = retry or RetryPolicy()
        self._now = now
        self._sleep = sleep
        self._window_lookup = window_lookup
        self._templates = templates if templates is not None else EMPTY_TEMPLATES
        self._grace_s = ambiguous_grace_s
        self._grace_poll_s = grace_poll_s
        self._rng = rng or random.Random()
        self._limiter = SendRateLimiter(
            throughput_mps=throughput_mps,
            pair_burst=pair_burst,
            pair_refill_s=pair_refill_s,
            now=now,
            sleep=sleep,
        )
        self.memory = OutboxMemory()
        # At most this many Graph requests at once (sends and read receipts): beyond that an
        # HTTP pool only queues them, and httpcore's pool does so at a cost that grows with
        # the queue (a burst of thousands spun a core).
        self._requests = asyncio.Semaphore(max_requests)
        # Read receipts get at most half of them: slow or failing ones never hold up replies.
        self._read_requests = asyncio.Semaphore(max(1, max_requests // 2))
        self._background_retry = background_retry
        self._background_deadline_s = background_deadline_s
        # One store call carries every wamid and status seen while the last one was in flight.
        self._behind: Batcher[SendResult | StatusWrite, None] = Batcher(
            self._write_behind, name=f"outbox-{phone_number_id}-writes", linger_s=write_linger_s
        )
        self._lanes: dict[str, Lane] = {}
        # Outbound ids some task is sending, with when they were recorded (for `status`).
        self._delivering: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dead_lettering: set[str] = set()
        self._closed = False
        self._handing_over = False  # draining: no new Graph request starts
        self._on_wire = 0  # send requests Meta has not answered yet

    def __repr__(self) -> str:
        return f"Outbox(phone_number_id={self.phone_number_id!r}, lanes={len(self._lanes)})"

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        """Stop: sends in flight are cancelled (their records stay "pending"; resubmit resumes)."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._behind.close()  # what was sent is written down

    async def drain(self, grace_s: float = 10.0) -> None:
        """Hand over to the next release's outbox (docs/cluster.md, "Upgrades"): start no new
        request, let the ones on the wire finish and be written (up to `grace_s`), then close.
        Everything not sent stays pending in the ledger, where the next outbox resumes it; a
        request cut off here would leave Meta's answer unknown, and cost the grace later."""
        self._handing_over = True
        deadline = time.monotonic() + grace_s
        # Polled: a drain happens once per release, and the counter needs no event of its own.
        while self._on_wire and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        await self.close()

    def in_flight(self) -> int:
        """Sends and writes still running in the background: 0 when this outbox is quiet."""
        return len(self._tasks) + self._behind.busy

    def status(self) -> OutboxStatus:
        """Its queue and rate limits now (`GET /api/status`): from memory, no store call."""
        now = self._now()
        # Pending in memory, and being sent but not read back yet (a dispatch loads its
        # records first): each is recorded and not yet accepted by Meta.
        queued = dict(self.memory.pending())
        for outbound_id, created_at in self._delivering.items():
            known = self.memory.get(outbound_id)
            if known is None or known.status == "pending":
                queued[outbound_id] = created_at
        oldest = min(queued.values(), default=None)
        limiter = self._limiter
        return OutboxStatus(
            phone_number_id=self.phone_number_id,
            queue_depth=len(queued),
            oldest_pending_s=None if oldest is None else max(0.0, now - oldest),
            throughput_mps=limiter.throughput.refill_per_s,
            tokens_available=max(0.0, limiter.throughput.tokens(now)),
            pair_buckets=len(limiter.pairs),
            waiting_sends=limiter.waiting,
        )

    def _count(self, event: str, n: int = 1) -> None:
        metrics.outbox_events.inc(n, phone_number_id=self.phone_number_id, event=event)

    def _count_send(self, result: str, error_code: int | None) -> None:
        metrics.outbox_sends.inc(
            phone_number_id=self.phone_number_id,
            result=result,
            error_code=metrics.send_error_code(error_code),
        )

    def report_metrics(self) -> None:
        """Set this number's queue gauges (from memory, like `status`)."""
        status = self.status()
        number = self.phone_number_id
        metrics.outbox_queue_depth.set(status.queue_depth, phone_number_id=number)
        oldest = status.oldest_pending_s or 0.0
        metrics.outbox_oldest_pending_seconds.set(oldest, phone_number_id=number)

    async def wait_idle(self) -> None:
        """Until every send started in the background (dispatch, resume, a template sent after
        a `failed` status) has finished and been written. For tests and orderly shutdowns."""
        while self._tasks or self._behind.busy:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
            await self._behind.close()

    async def __aenter__(self) -> Outbox:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- sending ----------------------------------------------------------------------------

    async def submit(self, items: Sequence[OutboundItem]) -> list[OutboundRecord]:
        """Record, then send, the parts of one reply, in order; returns their records.

        Items already sent (same `outbound_id`) are not sent again. Returns when every item is
        sent, dead-lettered, or found already done.
        """
        self._check_open()
        self._check_number(items)
        for item in items:  # record before send: from here on a resubmit cannot double-send
            if await self._ledger.record_outbound(item):
                self._count("submitted")
                self.memory.add_fresh(item)
        records = await self._send_recorded(items)
        await self._behind.close()  # the caller reads the ledger next: the wamids are in it
        return records

    async def _send_recorded(self, items: Sequence[OutboundItem]) -> list[OutboundRecord]:
        """Send items already in the ledger: one lane per recipient, parts in order."""
        ids = [item.outbound_id for item in items]
        self._delivering.update((i.outbound_id, i.created_at) for i in items)  # sweeps skip them
        try:
            return await self._send_in_lanes(items)
        finally:
            for outbound_id in ids:
                self._delivering.pop(outbound_id, None)

    async def _send_in_lanes(self, items: Sequence[OutboundItem]) -> list[OutboundRecord]:
        lanes: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            lanes.setdefault(recipient_key(item.to), []).append(index)
        runs = [
            self._spawn(self._run_lane(key, [items[i].outbound_id for i in indexes]))
            for key, indexes in lanes.items()
        ]
        results: list[OutboundRecord | None] = [None] * len(items)
        for indexes, records in zip(lanes.values(), await asyncio.gather(*runs), strict=True):
            for index, record in zip(indexes, records, strict=True):
                results[index] = record
        return [record for record in results if record is not None]

    async def mark_read(self, message_id: str, typing_indicator: bool = False) -> None:
        """Blue ticks on `message_id` (and earlier ones), optionally with the typing indicator."""
        self._check_open()
        async with self._requests:
            await self._graph.mark_as_read(message_id, typing_indicator=typing_indicator)

    async def mark_reads(self, message_ids: Sequence[str], typing_indicator: bool = True) -> None:
        """`mark_read` for each id, in the background: best effort, returns at once (a read
        receipt never holds up a turn). Failures are logged."""
        self._check_open()
        self._spawn(self._mark_reads_logged(list(message_ids), typing_indicator))

    async def _mark_reads_logged(self, message_ids: list[str], typing_indicator: bool) -> None:
        async def one(message_id: str) -> None:
            try:
                async with self._read_requests, self._requests:
                    await self._graph.mark_as_read(message_id, typing_indicator=typing_indicator)
            except Exception as exc:  # a missing read receipt never costs the user the answer
                log.warning(
                    "mark-as-read of %s failed: %s",
                    message_id,
                    _describe(exc),
                    extra=log_ids(wamid=message_id),
                )

        await asyncio.gather(*(one(message_id) for message_id in message_ids))

    def _check_number(self, items: Sequence[OutboundItem]) -> None:
        for item in items:
            if item.phone_number_id != self.phone_number_id:
                raise ValueError(
                    f"item {item.outbound_id!r} is for number {item.phone_number_id!r}, "
                    f"this outbox sends for {self.phone_number_id!r}"
                )

    async def replay_dead_letter(self, dead_letter_id: str) -> OutboundRecord:
        """Send a dead letter's message again, under `replay_outbound_id(...)`.

        The replay id is derived from the dead-letter id, so a second replay of the same dead
        letter finds the first one's record and sends nothing. A replay that fails again gets
        its own dead letter (replay that one to try once more).
        """
        self._check_open()
        letter = await self._ledger.get_dead_letter(dead_letter_id)
        if letter is None:
            raise KeyError(f"unknown dead letter {dead_letter_id!r}")
        original = await self._ledger.get_outbound(letter.outbound_id)
        if original is None:
            raise KeyError(f"dead letter {dead_letter_id!r} names unknown {letter.outbound_id!r}")
        item = replace(
            original.to_item(),
            outbound_id=replay_outbound_id(original.outbound_id, dead_letter_id),
            created_at=self._now(),
            purpose=REPLAY_PURPOSE,  # outside the window: the replay template, else the default
        )
        if await self._ledger.record_outbound(item):
            self._count("replay")
            self.memory.add_fresh(item)
        [record] = await self._spawn(self._run_lane(recipient_key(item.to), [item.outbound_id]))
        await self._behind.close()
        await self._ledger.mark_dead_letter_replayed(dead_letter_id, item.outbound_id, self._now())
        return record

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxClosedError(f"outbox for {self.phone_number_id} is closed")

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @contextlib.asynccontextmanager
    async def _lane(self, key: str) -> AsyncIterator[None]:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = Lane()
        lane.users += 1
        try:
            async with lane.lock:
                yield
        finally:
            lane.users -= 1
            if lane.users == 0:
                del self._lanes[key]

    async def _run_lane(self, key: str, outbound_ids: list[str]) -> list[OutboundRecord]:
        async with self._lane(key):
            return [await self._deliver(outbound_id) for outbound_id in outbound_ids]

    async def _deliver(self, outbound_id: str) -> OutboundRecord:
        """Send one recorded message unless the ledger says it is already done."""
        record = await self._get(outbound_id)
        if record.status == "failed" and not is_template_body(record.body):
            # Replaced by a template outside the window: that one is the message now (and is
            # sent here if a crash came between recording it and sending it).
            fallback = await self._find(template_outbound_id(outbound_id))
            if fallback is not None:
                return await self._deliver(fallback.outbound_id)
        if record.status != "pending":
            self._count("already_done")
            return record
        if record.attempts > 0 or outbound_id in self.memory.unsure:
            # A previous attempt may have reached Meta (crash or cancel between the request
            # and mark_sent): give its status webhook a chance to tell us before resending.
            record = await self._wait_for_status(outbound_id, self._grace_s)
            if record.status != "pending":
                self._count("already_done")
                return record
            self._count("ambiguous_resend")
            log.warning(
                "resending %s: attempted before, no status seen",
                outbound_id,
                extra=self._log_ids(outbound_id),
            )
        item = record.to_item()
        body = {**item.body, "biz_opaque_callback_data": item.outbound_id}
        if not is_template_body(body) and not await self._window_is_open(item):
            return await self._outside_window(record, RE_ENGAGEMENT_CODE, "24 h window closed")
        try:
            message = validate_send_body(body)
            if isinstance(message, MarkAsRead):
                raise MessageValidationError("a read receipt is not an outbound message", code=100)
        except MessageValidationError as exc:
            return await self._dead_letter(outbound_id, "invalid_message", exc.code, str(exc))
        return await self._send_with_retries(item, message)

    async def _send_with_retries(self, item: OutboundItem, message: Message) -> OutboundRecord:
        outbound_id = item.outbound_id
        attempts = 0
        last_error: str | None = None
        while True:
            await self._limiter.acquire(recipient_key(item.to))
            self.memory.attempt(outbound_id, last_error)  # before the request
            attempts += 1
            try:
                async with self._requests:
                    if self._handing_over:
                        await _parked()  # the next release's outbox sends it (still pending)
                    self._on_wire += 1
                    try:
                        result = await self._graph.send(message)
                    finally:
                        self._on_wire -= 1
            except WhatsAppError as exc:
                retrying = exc.is_transient and self._retry.should_retry(attempts)
                self._count_send("retried" if retrying else "failed", exc.code)
                if exc.code == RE_ENGAGEMENT_CODE or isinstance(exc, ReEngagementError):
                    record = await self._get(outbound_id)
                    return await self._outside_window(record, exc.code, str(exc))
                if not exc.is_transient:
                    reason = f"permanent_error:{type(exc).__name__}"
                    return await self._dead_letter(outbound_id, reason, exc.code, str(exc))
                if not retrying:
                    reason = f"retries_exhausted:{type(exc).__name__}"
                    return await self._dead_letter(outbound_id, reason, exc.code, str(exc))
                delay = self._retry.delay(attempts, exc.retry_after, self._rng)
                last_error = _describe(exc)
                log.info(
                    "retrying %s in %.1fs after %s",
                    outbound_id,
                    delay,
                    last_error,
                    extra=self._log_ids(outbound_id),
                )
                if is_ambiguous(exc):
                    # It may have been sent: wait at least the grace for its status webhook.
                    record = await self._wait_for_status(outbound_id, max(delay, self._grace_s))
                else:
                    await self._sleep(delay)
                    record = await self._get(outbound_id)
                if record.status != "pending":
                    return record  # a status webhook showed the earlier attempt got through
                continue
            record = self._sent(outbound_id, result.wamid)
            self._count_send("sent", None)
            return record

    async def _wait_for_status(self, outbound_id: str, seconds: float) -> OutboundRecord:
        """Poll for up to `seconds` until the record leaves "pending" (a status webhook moves
        it, in memory)."""
        deadline = self._now() + seconds
        while True:
            record = await self._get(outbound_id)
            remaining = deadline - self._now()
            if record.status != "pending" or remaining <= 0:
                return record
            await self._sleep(min(self._grace_poll_s, remaining))

    async def _dead_letter(
        self, outbound_id: str, reason: str, error_code: int | None, details: str | None
    ) -> OutboundRecord:
        await self._park(outbound_id, reason, error_code, details)
        return await self._get(outbound_id)

    async def _park(
        self, outbound_id: str, reason: str, error_code: int | None, details: str | None
    ) -> None:
        # Dead letter first: a crash between the two leaves it listed (and the record "dead").
        # The other order could leave a "failed" record with no dead letter to replay.
        dead_letter_id = await self._ledger.add_dead_letter(
            outbound_id, reason, error_code, details
        )
        await self._ledger.mark_failed(outbound_id, reason, error_code)
        self._merge_known(outbound_id, "dead", reason)
        metrics.dead_letters.inc(reason=reason.split(":", 1)[0])
        log.warning(
            "dead letter %s for %s: %s (%s)",
            dead_letter_id,
            outbound_id,
            reason,
            details,
            extra=self._log_ids(outbound_id),
        )

    async def _get(self, outbound_id: str) -> OutboundRecord:
        record = await self._find(outbound_id)
        if record is None:
            raise KeyError(f"outbound {outbound_id!r} is not in the ledger")
        return record

    async def _find(self, outbound_id: str) -> OutboundRecord | None:
        """Memory first; the ledger only for a record this outbox has not seen."""
        record = self.memory.get(outbound_id)
        if record is not None:
            return record
        loaded = await self._ledger.get_outbound(outbound_id)
        return None if loaded is None else self.memory.put_loaded(loaded)

    def _sent(self, outbound_id: str, wamid: str) -> OutboundRecord:
        """Meta accepted it: in memory now, in the ledger behind (`in_flight` counts it)."""
        record = self.memory.sent(outbound_id, wamid)
        self._behind.enqueue(SendResult(outbound_id, wamid, record.attempts))
        if log.isEnabledFor(logging.INFO):  # the hot path: no ids to build for nothing
            ids = record_log_ids(record)
            log.info("accepted by Meta as %s (attempt %d)", wamid, record.attempts, extra=ids)
        return record

    def _log_ids(self, outbound_id: str) -> dict[str, IdValue]:
        """An outbound message's ids for a log line, from memory (no store call)."""
        record = self.memory.get(outbound_id)
        return log_ids(outbound_id=outbound_id) if record is None else record_log_ids(record)

    def _merge_known(self, outbound_id: str, status: str, reason: str | None = None) -> None:
        if self.memory.get(outbound_id) is not None:
            self.memory.merge(outbound_id, status, reason)

    async def _write_behind(self, writes: list[SendResult | StatusWrite]) -> list[None]:
        """One store call for a batch, retried until it lands: a status is acked only after
        this, and a later batch must not overtake an earlier one."""
        sent = [w for w in writes if isinstance(w, SendResult)]
        statuses = [w for w in writes if isinstance(w, StatusWrite)]
        delay = 0.1
        while True:
            try:
                await self._ledger.write_behind(sent, statuses)
                return [None] * len(writes)
            except Exception as exc:
                if self._closed:  # stopping: the next outbox finds these records pending
                    raise OutboxClosedError(f"outbox for {self.phone_number_id} closed") from exc
                log.warning("writing %d send result(s) failed (%s); retrying in %.1fs",
                            len(writes), _describe(exc), delay)  # fmt: skip
                await self._sleep(delay)
                delay = min(delay * 2, 5.0)
