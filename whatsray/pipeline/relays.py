"""What a session host sends to outboxes and the inbox on the side of its turns, in batches
(docs/hot-path.md): status webhooks, read receipts, acks. One call carries everything that came
while the last one was in flight, so a busy host makes few calls and an idle one waits for none.

- `StatusRelay`: status webhooks go straight from the partition's consumer to their outbox (a
  status needs no session: its merge is monotonic, order does not matter), and are acked only
  once the outbox has written them down. A failed call is retried with backoff up to a deadline;
  a status that cannot be merged for good, or names a number no outbox serves, is quarantined
  (docs/errors.md) and acked.
- `ReadReceipts`: blue ticks and the typing indicator, best effort: never awaited by a turn.
- `AckBatcher`: one XACK for many sessions' committed entries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from whatsray.batching import Batcher
from whatsray.observability.logs import IdValue, log_ids
from whatsray.pipeline.ports import OutboxPort
from whatsray.pipeline.quarantine import QuarantineDesk
from whatsray.retries import Backoff, GaveUp, retry_until
from whatsray.session.config import Quarantine
from whatsray.whatsapp.events import StatusEvent

__all__ = ["AckBatcher", "ReadReceipts", "StatusRelay"]

log = logging.getLogger(__name__)

Ack = Callable[[tuple[str, ...]], Awaitable[None]]
# Short waits: a status held up by a restarting outbox must reach the new one within its grace
# for an ambiguous send (10 s), or that send goes out again (docs/outbox.md).
STATUS_BACKOFF = Backoff(initial_s=0.1, max_s=1.0)


class StatusRelay:
    def __init__(
        self,
        outbox_for: Callable[[str], OutboxPort],
        *,
        quarantine: QuarantineDesk | None = None,
        linger_s: float = 0.01,
        backoff: Backoff = STATUS_BACKOFF,
        deadline_s: float = 600.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._outbox_for = outbox_for
        self._quarantine = quarantine
        self._linger_s = linger_s
        self._batchers: dict[str, Batcher[StatusEvent, str | None]] = {}
        self._backoff = backoff
        self._deadline_s = deadline_s
        self._sleep = sleep
        self._now = now
        self._tasks: set[asyncio.Task[None]] = set()
        self.applied = 0
        self.quarantined = 0

    @property
    def pending(self) -> int:
        """Statuses handed over and not acked yet (the consumer's backpressure counts them)."""
        return len(self._tasks)

    async def apply(self, event: StatusEvent) -> str | None:
        """Merge one status through its outbox's batch; raises if that call failed."""
        number = event.phone_number_id
        if not number:
            raise ValueError(f"status {event.idempotency_key} names no business number")
        batcher = self._batchers.get(number)
        if batcher is None:
            outbox = self._outbox_for(number)  # an unknown number raises here (KeyError)
            batcher = Batcher(
                outbox.apply_statuses, name=f"statuses-{number}", linger_s=self._linger_s
            )
            self._batchers[number] = batcher
        return await batcher.submit(event)

    def deliver(self, event: StatusEvent, ack: Ack, token: str) -> None:
        """Apply in the background, retrying; ack once applied. Returns at once."""
        task = asyncio.create_task(self._apply_then_ack(event, ack, token))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _quarantined(self, event: StatusEvent, gave_up: GaveUp) -> bool:
        """Store a status given up on; False when even that failed (the caller leaves it)."""
        desk = self._quarantine
        if desk is None or event.chat is None:
            log.error("status %s dropped: %s", event.idempotency_key, gave_up,
                      extra=_status_ids(event))  # fmt: skip
            return True
        try:
            if isinstance(gave_up.error, KeyError):  # no outbox serves its number
                await desk.not_served(event, event.phone_number_id or "")
            else:
                reason, error = gave_up.reason, gave_up.description
                await desk.session_items(Quarantine(event.chat, "status", (event,), reason, error))
        except Exception:
            log.exception("status %s could not be quarantined", event.idempotency_key,
                          extra=_status_ids(event))  # fmt: skip
            return False
        self.quarantined += 1
        return True

    async def _apply_then_ack(self, event: StatusEvent, ack: Ack, token: str) -> None:
        def note(exc: BaseException, wait: float) -> None:
            log.warning("status %s not applied (%s: %s); retrying in %.1fs",
                        event.idempotency_key, type(exc).__name__, exc, wait,
                        extra=_status_ids(event))  # fmt: skip

        try:
            await retry_until(
                lambda: self.apply(event),
                what="status",
                backoff=self._backoff,
                deadline=self._now() + self._deadline_s,
                now=self._now,
                sleep=self._sleep,
                on_retry=note,
            )
            self.applied += 1
        except GaveUp as gave_up:
            if not await self._quarantined(event, gave_up):
                return  # left unacked: read again at the host's next start
        try:
            await ack((token,))
        except Exception:  # redelivered later, and merged again: harmless
            log.warning("ack of status %s failed", event.idempotency_key, exc_info=True,
                        extra=_status_ids(event))  # fmt: skip


class ReadReceipts:
    """Best effort: a receipt that fails is logged, never retried, and never reaches the turn.
    A call the outbox does not answer (its actor restarting) is given up after `timeout_s`, so
    it does not hold every later receipt of that number behind it."""

    def __init__(
        self,
        outbox_for: Callable[[str], OutboxPort],
        *,
        linger_s: float = 0.01,
        timeout_s: float = 10.0,
    ) -> None:
        self._outbox_for = outbox_for
        self._linger_s = linger_s
        self._timeout_s = timeout_s
        self._batchers: dict[str, Batcher[str, None]] = {}

    def send(self, phone_number_id: str, message_id: str) -> None:
        """Mark `message_id` read (with the typing indicator); never waits, never raises."""
        try:
            batcher = self._batcher(phone_number_id)
        except Exception as exc:
            ids = log_ids(wamid=message_id)
            log.warning("no read receipt for %s: %s", message_id, exc, extra=ids)
            return
        batcher.enqueue(message_id).add_done_callback(_log_failure)

    async def refresh(self, phone_number_id: str, message_id: str) -> None:
        """The typing indicator again (a long turn), through the same batches; never raises."""
        try:
            await self._batcher(phone_number_id).submit(message_id)
        except Exception as exc:
            ids = log_ids(wamid=message_id)
            log.warning("typing refresh for %s failed: %s", message_id, exc, extra=ids)

    def _batcher(self, number: str) -> Batcher[str, None]:
        batcher = self._batchers.get(number)
        if batcher is None:
            outbox = self._outbox_for(number)

            async def flush(message_ids: list[str]) -> list[None]:
                marking = outbox.mark_reads(message_ids, typing_indicator=True)
                await asyncio.wait_for(marking, self._timeout_s)
                return [None] * len(message_ids)

            batcher = Batcher(flush, name=f"reads-{number}", linger_s=self._linger_s)
            self._batchers[number] = batcher
        return batcher


class AckBatcher:
    """Acks of many sessions in one inbox call. A failed ack is logged, not retried: the
    entries come back later and are deduped (docs/sessions.md)."""

    def __init__(
        self, ack: Callable[[Sequence[str]], Awaitable[object]], *, linger_s: float = 0.005
    ) -> None:
        async def flush(groups: list[tuple[str, ...]]) -> list[None]:
            await ack([token for group in groups for token in group])
            return [None] * len(groups)

        self.batcher: Batcher[tuple[str, ...], None] = Batcher(
            flush, name="acks", linger_s=linger_s
        )

    async def __call__(self, tokens: tuple[str, ...]) -> None:
        if tokens:
            await self.batcher.submit(tokens)


def _status_ids(event: StatusEvent) -> dict[str, IdValue]:
    """`wamid`: the message the status is about (one the business sent)."""
    return log_ids(
        wamid=event.message_id, outbound_id=event.biz_opaque_callback_data, chat=event.chat
    )


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("read receipts failed: %s", future.exception())
