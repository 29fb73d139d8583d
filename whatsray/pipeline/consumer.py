"""Feed one inbox partition to a session registry, in stream order, never losing an entry.

Start-up order (docs/architecture.md, section 2): first this consumer's pending entries
(delivered before a crash, never acked), then entries stuck with other consumers (reclaimed),
then new ones. The registry acks each entry only after its turn is committed, so anything in
flight at a crash is simply read again here, and the session's dedupe makes the second delivery
harmless.

The consumer name is stable per partition (`host-<p>`), so a restarted host finds its own
pending entries with one read.

Failures follow the core's one retry rule (`whatsray.retries`): an inbox outage is waited out with
backoff, forever; a permanent inbox error (a misconfiguration no wait can heal) is raised out of
`run()`. An entry no session can take (poison, or an event with no chat) goes to `on_poison` and
is acked once that has recorded it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from whatsray.inbox import Inbox, InboxEntry, InboxError
from whatsray.retries import Backoff, GaveUp, retry_until
from whatsray.session.turns import InboundEntry

log = logging.getLogger(__name__)
_T = TypeVar("_T")

Deliver = Callable[[InboundEntry], Awaitable[None]]
OnPoison = Callable[[InboxEntry, str], Awaitable[None]]
"""Records an entry no session can take, with the reason (the entry's `poison` text, or
"no chat"); the consumer acks the entry once it returns."""

NO_CHAT = "no chat"


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
        on_poison: OnPoison | None = None,
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
        self._backoff = Backoff(initial_s=min(0.1, retry_max_s), max_s=retry_max_s)
        self._on_poison = on_poison
        self._sleep = sleep
        self._monotonic = monotonic or asyncio.get_running_loop().time
        self.delivered = 0
        self.skipped = 0  # poison entries and events with no chat: never delivered to a session

    async def run(self) -> None:
        """Consume until cancelled. Redis outages are waited out, never raised; a permanent
        inbox error (`GaveUp`, its `error` the `InboxError`) ends it."""
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
            if event is None or event.chat is None:
                self.skipped += 1
                reason = (entry.poison or "poison") if event is None else NO_CHAT
                await self._set_aside(entry, reason)
                continue
            await self._deliver(InboundEntry(event.chat, event, entry.entry_id))
            self.delivered += 1

    async def _set_aside(self, entry: InboxEntry, reason: str) -> None:
        """Nothing a session could do with `entry`: record it (`on_poison`), then ack it. It
        stays in the stream for inspection."""
        if self._on_poison is None:
            log.error(
                "partition %d: skipping inbox entry %s (%s)", self.partition, entry.entry_id, reason
            )
        else:
            record = self._on_poison
            try:
                # The store being down is waited out: acking first would lose the record.
                await retry_until(
                    lambda: record(entry, reason),
                    what=f"quarantine of inbox entry {entry.entry_id}",
                    backoff=self._backoff,
                    deadline=None,
                    now=self._monotonic,
                    sleep=self._sleep,
                    on_retry=lambda exc, wait: log.warning(
                        "partition %d: recording poison entry %s failed (%s); retrying in %.1fs",
                        self.partition,
                        entry.entry_id,
                        exc,
                        wait,
                    ),
                )
            except GaveUp as gave_up:
                # Left unacked: read again (and offered to on_poison again) at the next start.
                log.error(
                    "partition %d: inbox entry %s (%s) could not be recorded and stays unacked: %s",
                    self.partition,
                    entry.entry_id,
                    reason,
                    gave_up.description,
                )
                return
        await self._with_retry(lambda: self.inbox.ack(self.partition, [entry.entry_id]))

    async def _wait_for_capacity(self) -> None:
        # Backpressure: stop reading while the sessions hold too many unacked entries.
        while self._unacked() >= self._max_unacked:
            await self._sleep(0.05)

    async def _with_retry(self, action: Callable[[], Awaitable[_T]]) -> _T:
        """`action()`, an inbox outage waited out with backoff (no deadline). A permanent error
        (an `InboxError` that is not `InboxUnavailable`, such as a key of the wrong type) cannot
        heal by waiting: it is raised, as `GaveUp`, so that the host's task dies loudly."""

        async def attempt() -> _T:
            # Being stopped wins over retrying, or the host could never close. redis-py can
            # turn a cancelled read into a connection error, and on Python 3.11 its internal
            # `asyncio.wait_for` can even swallow a cancellation and return normally
            # (CPython gh-86296): so a pending cancellation is honoured either way.
            try:
                result = await action()
            except InboxError as exc:
                if _cancelling():
                    raise asyncio.CancelledError from exc
                raise
            if _cancelling():
                raise asyncio.CancelledError
            return result

        try:
            return await retry_until(
                attempt,
                what=f"inbox partition {self.partition}",
                backoff=self._backoff,
                deadline=None,
                now=self._monotonic,
                sleep=self._sleep,
                on_retry=lambda exc, wait: log.warning(
                    "inbox partition %d: %s; retrying in %.1fs", self.partition, exc, wait
                ),
            )
        except GaveUp as gave_up:
            log.error("inbox partition %d: %s", self.partition, gave_up)
            raise


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
