"""Feed one inbox partition to a session registry, in stream order, never losing an entry.

Start-up order (docs/architecture.md, section 2): first this consumer's pending entries
(delivered before a crash, never acked), then entries stuck with other consumers (reclaimed),
then new ones. The registry acks each entry only after its turn is committed, so anything in
flight at a crash is simply read again here, and the session's dedupe makes the second delivery
harmless.

The consumer name is stable per partition (`host-<p>`), so a restarted host finds its own
pending entries with one read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from whatsray.inbox import Inbox, InboxEntry, InboxError
from whatsray.session.turns import InboundEntry

log = logging.getLogger(__name__)
_T = TypeVar("_T")

Deliver = Callable[[InboundEntry], Awaitable[None]]


def consumer_name(partition: int) -> str:
    return f"host-{partition}"


class PartitionConsumer:
    def __init__(
        self,
        inbox: Inbox,
        partition: int,
        deliver: Deliver,
        *,
        unacked: Callable[[], int],
        batch: int = 100,
        block_ms: int = 1000,
        max_unacked: int = 2000,
        reclaim_idle_ms: int = 60_000,
        reclaim_every_s: float = 30.0,
        retry_max_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.inbox = inbox
        self.partition = partition
        self.consumer = consumer_name(partition)
        self._deliver = deliver
        self._unacked = unacked
        self._batch = batch
        self._block_ms = block_ms
        self._max_unacked = max_unacked
        self._reclaim_idle_ms = reclaim_idle_ms
        self._reclaim_every_s = reclaim_every_s
        self._retry_max_s = retry_max_s
        self._sleep = sleep
        self._monotonic = monotonic or asyncio.get_running_loop().time
        self.delivered = 0
        self.skipped = 0  # poison entries and events with no chat: logged and acked

    async def run(self) -> None:
        """Consume until cancelled. Redis outages are waited out, never raised."""
        await self._with_retry(self.catch_up)
        next_reclaim = self._monotonic() + self._reclaim_every_s
        while True:
            await self._wait_for_capacity()
            entries = await self._with_retry(
                lambda: self.inbox.read_new(
                    self.partition, self.consumer, self._batch, self._block_ms
                )
            )
            await self._hand_over(entries)
            if self._monotonic() >= next_reclaim:
                await self._with_retry(self._reclaim)
                next_reclaim = self._monotonic() + self._reclaim_every_s

    async def catch_up(self) -> None:
        """What a (re)started host does first: its own pending entries, then stale ones."""
        await self.inbox.ensure_group(self.partition)
        after = "0"
        while entries := await self.inbox.read_pending(
            self.partition, self.consumer, self._batch, after
        ):
            await self._hand_over(entries)
            after = entries[-1].entry_id
        await self._reclaim()

    async def _reclaim(self) -> None:
        start = "0-0"
        while True:
            claimed = await self.inbox.claim_stale(
                self.partition, self.consumer, self._reclaim_idle_ms, self._batch, start
            )
            await self._hand_over(claimed.entries)
            if claimed.done:
                return
            start = claimed.next_start_id

    async def _hand_over(self, entries: Sequence[InboxEntry]) -> None:
        for entry in entries:
            event = entry.event
            if entry.is_poison or event is None or event.chat is None:
                # Nothing a session could do with it; it stays in the stream for inspection.
                log.error("skipping inbox entry %s (poison or no chat)", entry.entry_id)
                self.skipped += 1
                await self.inbox.ack(self.partition, [entry.entry_id])
                continue
            await self._deliver(InboundEntry(event.chat, event, entry.entry_id))
            self.delivered += 1

    async def _wait_for_capacity(self) -> None:
        # Backpressure: stop reading while the sessions hold too many unacked entries.
        while self._unacked() >= self._max_unacked:
            await self._sleep(0.05)

    async def _with_retry(self, action: Callable[[], Awaitable[_T]]) -> _T:
        delay = 0.1
        while True:
            try:
                return await action()
            except InboxError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # redis-py can turn a cancelled blocking read into a connection error:
                    # being stopped wins over retrying, or the host could never close.
                    raise asyncio.CancelledError from exc
                log.warning("inbox partition %d: %s; retrying in %.1fs", self.partition, exc, delay)
                await self._sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
