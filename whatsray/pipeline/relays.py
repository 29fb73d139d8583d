"""What a session host sends to outboxes and the inbox on the side of its turns, in batches
(docs/hot-path.md): status webhooks, read receipts, acks. One call carries everything that came
while the last one was in flight, so a busy host makes few calls and an idle one waits for none.

- `StatusRelay`: status webhooks go straight from the partition's consumer to their outbox (a
  status needs no session: its merge is monotonic, order does not matter), and are acked only
  once the outbox has written them down. A failed call is retried with backoff.
- `ReadReceipts`: blue ticks and the typing indicator, best effort: never awaited by a turn.
- `AckBatcher`: one XACK for many sessions' committed entries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from whatsray.batching import Batcher
from whatsray.observability.logs import IdValue, log_ids
from whatsray.pipeline.ports import OutboxPort
from whatsray.whatsapp.events import StatusEvent

__all__ = ["AckBatcher", "ReadReceipts", "StatusRelay"]

log = logging.getLogger(__name__)

Ack = Callable[[tuple[str, ...]], Awaitable[None]]


class StatusRelay:
    def __init__(
        self,
        outbox_for: Callable[[str], OutboxPort],
        *,
        linger_s: float = 0.01,
        retry_max_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._outbox_for = outbox_for
        self._linger_s = linger_s
        self._batchers: dict[str, Batcher[StatusEvent, str | None]] = {}
        self._retry_max_s = retry_max_s
        self._sleep = sleep
        self._tasks: set[asyncio.Task[None]] = set()
        self.applied = 0

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

    async def _apply_then_ack(self, event: StatusEvent, ack: Ack, token: str) -> None:
        delay = 0.1
        while True:
            try:
                await self.apply(event)
                break
            except KeyError:
                # A number this app does not send for: nothing to merge it into.
                log.warning("status %s is for number %s, which no outbox serves: acked",
                            event.idempotency_key, event.phone_number_id,
                            extra=_status_ids(event))  # fmt: skip
                break
            except Exception as exc:
                log.warning("status %s not applied (%s: %s); retrying in %.1fs",
                            event.idempotency_key, type(exc).__name__, exc, delay,
                            extra=_status_ids(event))  # fmt: skip
                await self._sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
        self.applied += 1
        try:
            await ack((token,))
        except Exception:  # redelivered later, and merged again: harmless
            log.warning("ack of status %s failed", event.idempotency_key, exc_info=True,
                        extra=_status_ids(event))  # fmt: skip


class ReadReceipts:
    def __init__(self, outbox_for: Callable[[str], OutboxPort], *, linger_s: float = 0.01) -> None:
        self._outbox_for = outbox_for
        self._linger_s = linger_s
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
        """The typing indicator again (a long turn), through the same batches."""
        await self._batcher(phone_number_id).submit(message_id)

    def _batcher(self, number: str) -> Batcher[str, None]:
        batcher = self._batchers.get(number)
        if batcher is None:
            outbox = self._outbox_for(number)

            async def flush(message_ids: list[str]) -> list[None]:
                await outbox.mark_reads(message_ids, typing_indicator=True)
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
