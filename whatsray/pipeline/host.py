"""A SessionHost without Ray: one inbox partition, its consumer loop and its session registry.

The `SessionHost` Ray actor is a thin shell around this (one per partition, named, restarted by
Ray); tests and single-process runs use it directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from whatsray import metrics
from whatsray.agents.config import AgentsConfig
from whatsray.inbox import Inbox, partition_for
from whatsray.observability.logs import log_ids
from whatsray.pipeline.committer import TurnCommitter
from whatsray.pipeline.consumer import PartitionConsumer
from whatsray.pipeline.handoff import HandoffDesk, HandoffStorePort
from whatsray.pipeline.hooks import build_session_hooks
from whatsray.pipeline.ports import AgentsPort, OutboxPort, RouterPort, StorePort
from whatsray.pipeline.quarantine import QuarantineDesk
from whatsray.pipeline.relays import AckBatcher, ReadReceipts, StatusRelay
from whatsray.pipeline.routing import RulesFirstRouter
from whatsray.pipeline.waiting import WaitingNotice
from whatsray.retries import Backoff, GaveUp, retry_until
from whatsray.session import SessionConfig, SessionRegistry
from whatsray.session.turns import InboundEntry
from whatsray.whatsapp.events import ChatKey, StatusEvent

log = logging.getLogger(__name__)

# An inbound entry with no outcome this long counts as unresolved (`whatsray_inbound_unresolved`,
# the admin API's default, docs/errors.md).
UNRESOLVED_AFTER_S = 60.0

# Tells the session host owning `chat` (another partition's) to drop its cached state.
InvalidateElsewhere = Callable[[ChatKey], Awaitable[None]]


class HostStorePort(StorePort, HandoffStorePort, Protocol):
    """What a host needs of the store: the turn pipeline's and the handoff desk's methods."""

    async def update_chat(
        self,
        chat: ChatKey | str,
        *,
        last_inbound_at: float | None = ...,
        handoff: bool = ...,
    ) -> None: ...


class SessionHostCore:
    """One partition's consumer, sessions and handoff desk.

    `partitions` and `invalidate_elsewhere` let a handoff change made here (an operator's
    `/release` of a chat in another partition) reach the session host that holds that chat; with
    `partitions=None` every chat counts as this host's. `operator_number` and
    `handoff_release_after_s` (None: never) configure the desk (docs/handoff.md).

    Everything the host sends on the sessions' behalf goes out in batches (docs/hot-path.md):
    turn commits (`commit_linger_s`), acks, status webhooks (straight from the consumer to the
    outbox, never through a session) and read receipts. `router` is asked only when the rules,
    applied here, leave the choice to its classifier.

    At start the host asks each of `phone_number_ids`' outboxes to take up what is recorded and
    pending: a host that died between a batch's commit and its dispatch leaves replies that its
    redelivered entries will not send again (they are committed), docs/outbox.md, "Sweeps"."""

    def __init__(
        self,
        partition: int,
        *,
        inbox: Inbox,
        store: HostStorePort,
        router: RouterPort,
        agents: AgentsPort,
        outbox_for: Callable[[str], OutboxPort],
        agents_config: AgentsConfig,
        session_config: SessionConfig | None = None,
        sweep_every_s: float = 60.0,
        consumer_options: dict[str, Any] | None = None,
        now: Callable[[], float] = time.time,
        operator_number: str | None = None,
        handoff_release_after_s: float | None = None,
        partitions: int | None = None,
        invalidate_elsewhere: InvalidateElsewhere | None = None,
        commit_linger_s: float = 0.04,
        phone_number_ids: Sequence[str] = (),
    ) -> None:
        self.partition = partition
        self._inbox = inbox
        self._sweep_every_s = sweep_every_s
        self._partitions = partitions
        self._invalidate_elsewhere = invalidate_elsewhere
        config = session_config or SessionConfig()
        self.desk = HandoffDesk(
            store,
            outbox_for,
            operator_number=operator_number,
            changed=self._chat_changed,
            now=now,
            release_after_s=handoff_release_after_s,
        )

        self.acks = AckBatcher(lambda tokens: inbox.ack(partition, tokens))
        self.committer = TurnCommitter(store, outbox_for, now=now, linger_s=commit_linger_s)
        self.quarantine = QuarantineDesk(store, now=now)
        self._served = frozenset(phone_number_ids)  # empty: every number is this app's
        self.statuses = StatusRelay(outbox_for, quarantine=self.quarantine)
        self.reads = ReadReceipts(outbox_for)
        self.router = RulesFirstRouter(agents_config, router)
        self.waiting = WaitingNotice()
        hooks = build_session_hooks(
            store=store,
            router=self.router,
            agents=agents,
            outbox_for=outbox_for,
            ack=self.acks,
            agents_config=agents_config,
            session_config=config,
            now=now,
            waiting=self.waiting,
            desk=self.desk,
            committer=self.committer,
            statuses=self.statuses,
            reads=self.reads,
            quarantine=self.quarantine,
        )
        self.registry = SessionRegistry(hooks, config, now=now)
        self._consumer_options = consumer_options or {}
        self._outbox_for = outbox_for
        self._phone_number_ids = tuple(phone_number_ids)
        self.consumer: PartitionConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for number in self._phone_number_ids:
            try:
                await self._outbox_for(number).sweep_pending(0.0)
            except Exception:  # its own periodic sweep takes them up later
                log.warning("partition %d: outbox %s sweep failed", self.partition, number)
        self.consumer = PartitionConsumer(
            self._inbox,
            self.partition,
            self._deliver,
            unacked=self._in_hand,
            on_poison=self.quarantine.poison,
            **self._consumer_options,
        )
        self._tasks = [
            asyncio.create_task(self.consumer.run(), name=f"consume-{self.partition}"),
            asyncio.create_task(self._sweep_forever(), name=f"sweep-{self.partition}"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        """A loop of the host ended on its own: only a permanent failure does that (the inbox
        laid out for another partition count, say). Said loudly: the partition is not read."""
        if not task.cancelled() and task.exception() is not None:
            log.critical(
                "partition %d: %s stopped: %r", self.partition, task.get_name(), task.exception()
            )

    async def close(self, grace_s: float = 5.0) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a client library that swallows a cancellation must not hang a shutdown.
            _, stuck = await asyncio.wait(self._tasks, timeout=grace_s)
            for task in stuck:
                log.warning(
                    "partition %d: %s did not stop in time", self.partition, task.get_name()
                )
        await self.registry.close()
        await self.statuses.close()
        await self.acks.batcher.close()  # the acks of finished turns reach the stream

    async def drain(self, grace_s: float = 10.0) -> None:
        """Hand the partition over to the next release (docs/cluster.md, "Upgrades"): stop
        reading, give the turns in hand up to `grace_s` to finish and be acked, then close.
        What is still unacked then is read again by the next host, and deduped there."""
        for task in self._tasks[:1]:  # the consumer: nothing new is read from here on
            task.cancel()
        deadline = time.monotonic() + grace_s
        # Polled: a drain happens once per release, and the counts live in several objects.
        while self._in_hand() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await self.close()

    def _in_hand(self) -> int:
        return self.registry.stats().unacked + self.statuses.pending

    async def _deliver(self, entry: InboundEntry) -> None:
        number = entry.chat.phone_number_id
        if self._served and number not in self._served:
            await self._not_served(entry, number)
        elif isinstance(entry.event, StatusEvent):
            self.statuses.deliver(entry.event, self.acks, entry.ack_token)
        else:
            await self.registry.deliver(entry)

    async def _not_served(self, entry: InboundEntry, number: str) -> None:
        """An event for a number this app does not serve: stored and acked, never a session's.
        Waits out a store outage; a record that cannot be written stays unacked."""
        try:
            await retry_until(
                lambda: self.quarantine.not_served(entry.event, number),
                what="not_served",
                backoff=Backoff(),
                deadline=None,
                now=time.monotonic,
                sleep=asyncio.sleep,
            )
        except GaveUp:
            log.exception(
                "partition %d: an event for %s could not be stored", self.partition, number
            )
            return
        await self.acks((entry.ack_token,))

    async def report_metrics(self) -> None:
        """Set this partition's gauges: its inbox backlog, what has no outcome after a minute,
        and its sessions in memory."""
        backlog = await self._inbox.backlog(self.partition)
        partition = self.partition
        count, oldest_s = await self._inbox.unresolved_summary(partition, UNRESOLVED_AFTER_S)
        metrics.inbound_unresolved.set(count, partition=partition)
        metrics.inbound_unresolved_oldest_seconds.set(oldest_s, partition=partition)
        metrics.inbox_lag_entries.set(backlog.lag, partition=partition)
        metrics.inbox_pending_entries.set(backlog.pending, partition=partition)
        metrics.inbox_oldest_pending_seconds.set(backlog.oldest_pending_s, partition=partition)
        metrics.sessions_active.set(self.registry.counts().active, partition=partition)

    def stats(self) -> dict[str, Any]:
        consumer = self.consumer
        return {
            "partition": self.partition,
            "delivered": consumer.delivered if consumer else 0,
            "skipped": consumer.skipped if consumer else 0,
            "statuses_applied": self.statuses.applied,
            "statuses_quarantined": self.statuses.quarantined,
            "commit_calls": self.committer.batcher.calls,
            "turns_committed": self.committer.batcher.items,
            "ack_calls": self.acks.batcher.calls,
            "router_remote_calls": self.router.remote_calls,
            **dataclasses.asdict(self.registry.stats()),
            **dataclasses.asdict(self.waiting.stats),
            "handoff_forwarded": self.desk.forwarded,
            "handoff_relayed": self.desk.relayed,
            "handoff_released": self.desk.released,
        }

    # -- handoff ---------------------------------------------------------------------------------

    def owns(self, chat: ChatKey) -> bool:
        """Whether this host's partition holds `chat`."""
        return self._partitions is None or partition_for(chat, self._partitions) == self.partition

    def invalidate(self, chat: ChatKey | str) -> None:
        """The store changed `chat` behind its session: reload before its next turn."""
        self.registry.invalidate(chat)

    async def set_handoff(self, chat: ChatKey | str, on: bool) -> None:
        """Hand `chat` to a person (or back to the bot): the store's flag, then its session.
        Call it on the host that owns the chat (`owns`); the admin API's route does."""
        key = chat if isinstance(chat, ChatKey) else ChatKey.parse(chat)
        await self.desk.set_handoff(key, on)

    async def release_idle_handoffs(self) -> list[ChatKey]:
        """Release this partition's chats in handoff with no message for the configured time."""
        released = await self.desk.release_idle(self.owns)
        if released:
            log.info("partition %d: released %d idle handoff(s)", self.partition, len(released))
        return released

    async def _chat_changed(self, chat: ChatKey) -> None:
        if self.owns(chat):
            self.registry.invalidate(chat)
        elif self._invalidate_elsewhere is not None:
            await self._invalidate_elsewhere(chat)
        else:
            ids = log_ids(chat=chat)
            log.warning("chat changed, but its session host cannot be told", extra=ids)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_every_s)
            passivated = await self.registry.sweep()
            if passivated:
                log.info("partition %d: passivated %d idle session(s)", self.partition, passivated)
            try:
                await self.release_idle_handoffs()
            except Exception:  # the next sweep tries again; sessions must go on being swept
                log.exception("partition %d: releasing idle handoffs failed", self.partition)
