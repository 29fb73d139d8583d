"""PartitionConsumer against a real Valkey and the real Inbox: backpressure, poison entries,
Redis outages and the periodic reclaim of entries stuck with a dead consumer.

The consumer's `sleep` and `monotonic` are injected: a test sees every wait the consumer takes
(backpressure, retry backoff) and moves its clock by hand. An absence ("nothing more was read")
is proven after the consumer has gone round its loop again, never after a fixed sleep.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.support.servers import free_port
from whatsray.inbox import (
    NO_CHAT_PARTITION,
    EmbeddedValkey,
    Inbox,
    InboxEntry,
    InboxError,
    InboxUnavailable,
    partition_for,
)
from whatsray.pipeline.consumer import NO_CHAT, PartitionConsumer, consumer_name
from whatsray.retries import GaveUp
from whatsray.session.turns import InboundEntry
from whatsray.whatsapp.events import ChatKey, MessageEvent, OtherEvent
from whatsray.whatsapp.message_content import MessageType, TextContent

pytestmark = pytest.mark.integration

PHONE_NUMBER_ID = "123456789"
PARTITIONS = 2
BACKPRESSURE_S = 0.05  # the consumer's wait while the sessions hold too many entries


def user_in(partition: int) -> str:
    return next(
        user
        for user in (f"1555{n:07d}" for n in range(10_000))
        if partition_for(ChatKey(phone_number_id=PHONE_NUMBER_ID, user=user), PARTITIONS)
        == partition
    )


def message(user: str, wamid: str) -> MessageEvent:
    return MessageEvent(
        idempotency_key=wamid,
        chat=ChatKey(phone_number_id=PHONE_NUMBER_ID, user=user),
        phone_number_id=PHONE_NUMBER_ID,
        message_id=wamid,
        type=MessageType.TEXT,
        content=TextContent(body=wamid),
        from_phone=user,
    )


def messages(partition: int, prefix: str, count: int) -> list[MessageEvent]:
    user = user_in(partition)
    return [message(user, f"wamid.{prefix}{i}") for i in range(count)]


async def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Sessions:
    """The consumer's `deliver`: records each entry and holds it unacked until released."""

    def __init__(self) -> None:
        self.got: list[InboundEntry] = []
        self.held: list[str] = []

    async def deliver(self, entry: InboundEntry) -> None:
        self.got.append(entry)
        self.held.append(entry.ack_token)

    def unacked(self) -> int:
        return len(self.held)

    @property
    def keys(self) -> list[str]:
        return [e.event.idempotency_key for e in self.got]


class Waits:
    """The consumer's `sleep`: records every wait; really sleeps `scale` of it (at least a
    little, so that a waiting consumer does not spin)."""

    def __init__(self, scale: float = 0.0) -> None:
        self.scale = scale
        self.calls: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(max(0.005, seconds * self.scale))

    def count(self, seconds: float) -> int:
        return sum(1 for s in self.calls if s == seconds)

    @property
    def retries(self) -> list[float]:
        return [s for s in self.calls if s != BACKPRESSURE_S]


class Clock:
    """The consumer's `monotonic`: moved by hand; counts its calls (one per round of the loop)."""

    def __init__(self) -> None:
        self.t = 0.0
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.t


@asynccontextmanager
async def running(consumer: PartitionConsumer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(consumer.run())
    try:
        yield task
    finally:
        if task.done():
            task.result()  # the consumer died: show why
        task.cancel()
        with suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


@pytest.fixture
async def inbox(redis: aioredis.Redis) -> Inbox:
    return Inbox(redis, partitions=PARTITIONS)


async def pending_ids(inbox: Inbox, partition: int, consumer: str) -> list[str]:
    return [e.entry_id for e in await inbox.read_pending(partition, consumer, count=1000)]


# -- backpressure ---------------------------------------------------------------------------------


async def test_backpressure_stops_reading_at_max_unacked_and_resumes_as_acks_come(
    inbox: Inbox,
) -> None:
    partition = 1
    events = messages(partition, "bp", 10)
    await inbox.append(events)
    sessions, waits = Sessions(), Waits()
    consumer = PartitionConsumer(
        inbox,
        partition,
        sessions.deliver,
        unacked=sessions.unacked,
        batch=2,
        max_unacked=3,
        block_ms=20,
        sleep=waits.sleep,
    )

    async def stalled_at(delivered: int) -> None:
        # Two more backpressure waits: it looked at its capacity again and did not read.
        await wait_for(lambda: len(sessions.got) >= delivered, f"{delivered} deliveries")
        seen = waits.count(BACKPRESSURE_S)
        await wait_for(lambda: waits.count(BACKPRESSURE_S) >= seen + 2, "backpressure waits")
        assert len(sessions.got) == delivered
        assert (await inbox.backlog(partition)).lag == len(events) - delivered  # not even read

    async with running(consumer):
        await stalled_at(4)  # 2, then 2 more (2 < 3), then 4 >= 3: stop
        del sessions.held[:2]  # two turns committed: 2 unacked
        await stalled_at(6)
        sessions.held.clear()
        await stalled_at(10)  # 0 -> 2 -> 4, and the stream is empty anyway

    assert sessions.keys == [e.idempotency_key for e in events]
    assert consumer.delivered == 10 and consumer.skipped == 0


# -- poison entries -------------------------------------------------------------------------------


async def poisoned_partition(inbox: Inbox, redis: aioredis.Redis) -> dict[str, str]:
    """Partition 0: a message, an entry that does not decode, an event with no chat, a message.
    Returns the entry ids by name."""
    user = user_in(NO_CHAT_PARTITION)
    first = await inbox.append([message(user, "wamid.first")])
    garbage = await redis.xadd(inbox.stream_key(NO_CHAT_PARTITION), {"v": "1", "event": "nope"})
    no_chat = await inbox.append(
        [OtherEvent(idempotency_key="account-update-1", field="account_update", raw={})]
    )
    last = await inbox.append([message(user, "wamid.last")])
    assert {no_chat.outcomes[0].partition} == {NO_CHAT_PARTITION}
    return {
        "first": first.outcomes[0].entry_id,
        "garbage": garbage.decode(),
        "no_chat": no_chat.outcomes[0].entry_id,
        "last": last.outcomes[0].entry_id,
    }


async def test_poison_and_chatless_entries_go_to_on_poison_before_their_ack(
    inbox: Inbox, redis: aioredis.Redis
) -> None:
    ids = await poisoned_partition(inbox, redis)
    sessions = Sessions()
    recorded: list[tuple[str, str, bool]] = []

    async def on_poison(entry: InboxEntry, reason: str) -> None:
        still_pending = await redis.xpending_range(
            inbox.stream_key(NO_CHAT_PARTITION), inbox.group, entry.entry_id, entry.entry_id, 1
        )
        recorded.append((entry.entry_id, reason, bool(still_pending)))

    consumer = PartitionConsumer(
        inbox,
        NO_CHAT_PARTITION,
        sessions.deliver,
        unacked=sessions.unacked,
        block_ms=20,
        on_poison=on_poison,
    )
    async with running(consumer):
        await wait_for(lambda: len(sessions.got) == 2, "both messages")

    assert sessions.keys == ["wamid.first", "wamid.last"]
    garbage_reason = recorded[0][1]
    assert recorded == [(ids["garbage"], garbage_reason, True), (ids["no_chat"], NO_CHAT, True)]
    assert "does not decode" in garbage_reason
    assert (consumer.delivered, consumer.skipped) == (2, 2)
    # Acked once recorded; the messages wait for their turns (this test never acks them).
    mine = await pending_ids(inbox, NO_CHAT_PARTITION, consumer_name(NO_CHAT_PARTITION))
    assert mine == [ids["first"], ids["last"]]
    assert await inbox.length(NO_CHAT_PARTITION) == 4  # kept in the stream for inspection


async def test_a_store_outage_while_recording_poison_is_waited_out(
    inbox: Inbox, redis: aioredis.Redis
) -> None:
    ids = await poisoned_partition(inbox, redis)
    sessions, waits = Sessions(), Waits()
    journal: list[str] = []

    async def deliver(entry: InboundEntry) -> None:
        journal.append(f"deliver {entry.ack_token}")
        await sessions.deliver(entry)

    async def on_poison(entry: InboxEntry, reason: str) -> None:
        tries = sum(1 for line in journal if line.startswith(f"poison {entry.entry_id}"))
        journal.append(f"poison {entry.entry_id} try {tries + 1}")
        if tries < 2:
            raise ConnectionError("the store is down")  # transient

    consumer = PartitionConsumer(
        inbox,
        NO_CHAT_PARTITION,
        deliver,
        unacked=sessions.unacked,
        block_ms=20,
        on_poison=on_poison,
        sleep=waits.sleep,
    )
    async with running(consumer):
        await wait_for(lambda: len(sessions.got) == 2, "both messages")

    assert journal == [
        f"deliver {ids['first']}",
        f"poison {ids['garbage']} try 1",
        f"poison {ids['garbage']} try 2",
        f"poison {ids['garbage']} try 3",
        f"poison {ids['no_chat']} try 1",
        f"poison {ids['no_chat']} try 2",
        f"poison {ids['no_chat']} try 3",
        f"deliver {ids['last']}",
    ]
    # Backoff, doubling, with jitter: 0.1 s then 0.2 s (+-20 %), for each entry.
    assert len(waits.retries) == 4
    for first, second in (waits.retries[:2], waits.retries[2:]):
        assert 0.08 <= first <= 0.12 and 0.16 <= second <= 0.24
    mine = await pending_ids(inbox, NO_CHAT_PARTITION, consumer_name(NO_CHAT_PARTITION))
    assert mine == [ids["first"], ids["last"]]


async def test_a_poison_entry_that_cannot_be_recorded_stays_unacked_for_the_next_start(
    inbox: Inbox, redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await poisoned_partition(inbox, redis)
    sessions = Sessions()
    recorded: list[str] = []

    async def refusing(entry: InboxEntry, reason: str) -> None:
        if entry.entry_id == ids["garbage"]:
            raise ValueError("the record does not validate")  # permanent
        recorded.append(entry.entry_id)

    consumer = PartitionConsumer(
        inbox,
        NO_CHAT_PARTITION,
        sessions.deliver,
        unacked=sessions.unacked,
        on_poison=refusing,
        block_ms=20,
    )
    with caplog.at_level(logging.ERROR, logger="whatsray.pipeline.consumer"):
        async with running(consumer):
            await wait_for(lambda: len(sessions.got) == 2, "both messages")

    assert sessions.keys == ["wamid.first", "wamid.last"]  # the partition went on
    assert recorded == [ids["no_chat"]]
    assert consumer.skipped == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(ids["garbage"] in line and "ValueError" in line for line in errors)
    mine = await pending_ids(inbox, NO_CHAT_PARTITION, consumer_name(NO_CHAT_PARTITION))
    assert mine == [ids["first"], ids["garbage"], ids["last"]]

    # The host's next start: its pending entries first, the poison one offered again.
    async def accepting(entry: InboxEntry, reason: str) -> None:
        recorded.append(entry.entry_id)

    restarted = PartitionConsumer(
        inbox, NO_CHAT_PARTITION, Sessions().deliver, unacked=lambda: 0, on_poison=accepting
    )
    await restarted.catch_up()
    assert recorded == [ids["no_chat"], ids["garbage"]]
    mine = await pending_ids(inbox, NO_CHAT_PARTITION, consumer_name(NO_CHAT_PARTITION))
    assert mine == [ids["first"], ids["last"]]


async def test_without_on_poison_a_poison_entry_is_logged_and_acked(
    inbox: Inbox, redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await poisoned_partition(inbox, redis)
    sessions = Sessions()
    consumer = PartitionConsumer(
        inbox, NO_CHAT_PARTITION, sessions.deliver, unacked=sessions.unacked, block_ms=20
    )
    with caplog.at_level(logging.ERROR, logger="whatsray.pipeline.consumer"):
        async with running(consumer):
            await wait_for(lambda: len(sessions.got) == 2, "both messages")

    assert consumer.skipped == 2
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert ids["garbage"] in logged and ids["no_chat"] in logged
    mine = await pending_ids(inbox, NO_CHAT_PARTITION, consumer_name(NO_CHAT_PARTITION))
    assert mine == [ids["first"], ids["last"]]


# -- Redis outages and permanent errors -----------------------------------------------------------


async def test_a_redis_outage_is_waited_out_and_nothing_is_lost_or_reordered(
    tmp_path: Path,
) -> None:
    server = EmbeddedValkey(tmp_path, appendonly=True)
    url = await server.astart()
    partition = 1
    before, after = messages(partition, "before", 5), messages(partition, "after", 5)
    sessions, waits = Sessions(), Waits(scale=1.0)
    try:
        async with Inbox.from_url(url, partitions=PARTITIONS, socket_timeout_s=5.0) as inbox:
            await inbox.append(before[:2])
            consumer = PartitionConsumer(
                inbox,
                partition,
                sessions.deliver,
                unacked=lambda: 0,
                block_ms=100,
                retry_max_s=0.3,
                sleep=waits.sleep,
            )
            async with running(consumer) as task:
                await inbox.append(before[2:])
                await wait_for(lambda: len(sessions.got) == 5, "the entries from before")

                await server.astop()
                await wait_for(lambda: len(waits.retries) >= 2, "retries during the outage")
                with pytest.raises(InboxUnavailable):
                    await inbox.append(after[:1])  # the ingress answers 503 meanwhile
                assert not task.done()

                assert await server.astart() == url  # same port, same data dir, its AOF loaded
                await inbox.append(after)
                await wait_for(lambda: len(sessions.got) == 10, "the entries from after")

        expected = [e.idempotency_key for e in before + after]
        assert sessions.keys == expected  # each once, in stream order
        entry_ids = [e.ack_token for e in sessions.got]
        assert entry_ids == sorted(entry_ids, key=lambda i: tuple(map(int, i.split("-"))))
    finally:
        await server.astop()


async def test_cancelling_wins_over_retrying() -> None:
    waits = Waits()
    async with Inbox.from_url(f"redis://127.0.0.1:{free_port()}", partitions=PARTITIONS) as inbox:
        consumer = PartitionConsumer(
            inbox, 0, Sessions().deliver, unacked=lambda: 0, sleep=waits.sleep
        )
        task = asyncio.create_task(consumer.run())
        await wait_for(lambda: len(waits.retries) >= 3, "retries against nothing")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
    assert waits.retries[:3] == sorted(waits.retries[:3])  # backing off


class SwallowingInbox(Inbox):
    """As redis-py on Python 3.11 sometimes does (its `asyncio.wait_for`, CPython gh-86296): a
    cancellation during a read is swallowed and the read returns normally."""

    reads = 0

    async def read_new(
        self, partition: int, consumer: str, count: int = 100, block_ms: int | None = None
    ) -> tuple[InboxEntry, ...]:
        self.reads += 1
        try:
            return await super().read_new(partition, consumer, count, block_ms)
        except asyncio.CancelledError:
            return ()


async def test_a_cancellation_swallowed_by_the_client_still_stops_the_consumer(
    redis: aioredis.Redis,
) -> None:
    inbox = SwallowingInbox(redis, partitions=PARTITIONS)
    consumer = PartitionConsumer(inbox, 0, Sessions().deliver, unacked=lambda: 0, block_ms=5000)
    task = asyncio.create_task(consumer.run())
    await wait_for(lambda: inbox.reads == 1, "a blocking read")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 20)
    assert inbox.reads == 1  # stopped at once, not after another read


async def test_a_permanent_inbox_error_ends_the_consumer(
    inbox: Inbox, redis: aioredis.Redis
) -> None:
    # Something else squats on the partition's key: no wait can heal that.
    await redis.set(inbox.stream_key(1), "not a stream")
    waits = Waits()
    consumer = PartitionConsumer(
        inbox, 1, Sessions().deliver, unacked=lambda: 0, block_ms=20, sleep=waits.sleep
    )
    with pytest.raises(GaveUp) as caught:
        await asyncio.wait_for(consumer.run(), 10)
    assert caught.value.reason == "permanent"
    assert isinstance(caught.value.error, InboxError)
    assert not isinstance(caught.value.error, InboxUnavailable)
    assert "WRONGTYPE" in str(caught.value)
    assert waits.retries == []


# -- periodic reclaim -----------------------------------------------------------------------------


async def stuck_with_a_dead_consumer(
    inbox: Inbox, redis: aioredis.Redis, partition: int, events: list[MessageEvent]
) -> list[str]:
    """Entries read by "dead-host" and never acked; returns their ids."""
    await inbox.append(events)
    await inbox.ensure_group(partition)
    taken = await inbox.read_new(partition, "dead-host", count=len(events))
    assert [e.event.idempotency_key for e in taken if e.event] == [
        e.idempotency_key for e in events
    ]
    return [e.entry_id for e in taken]


async def age(inbox: Inbox, redis: aioredis.Redis, partition: int, ids: list[str]) -> None:
    """Make entries look idle for two minutes, as if their consumer had died long ago."""
    stream = inbox.stream_key(partition)
    await redis.xclaim(stream, inbox.group, "dead-host", 0, ids, idle=120_000, justid=True)


async def test_entries_stuck_with_a_dead_consumer_are_reclaimed_on_schedule(
    inbox: Inbox, redis: aioredis.Redis
) -> None:
    partition = 1
    clock, sessions = Clock(), Sessions()
    consumer = PartitionConsumer(
        inbox,
        partition,
        sessions.deliver,
        unacked=sessions.unacked,
        block_ms=20,
        reclaim_idle_ms=60_000,
        reclaim_every_s=30.0,
        monotonic=clock,
    )
    # Both batches are taken by "dead-host" before the consumer starts (it would read them
    # itself otherwise); each is made old in its turn.
    stuck = await stuck_with_a_dead_consumer(inbox, redis, partition, messages(1, "s", 3))
    later = await stuck_with_a_dead_consumer(inbox, redis, partition, messages(1, "l", 2))

    async def rounds(n: int) -> None:
        seen = clock.calls
        await wait_for(lambda: clock.calls >= seen + n, f"{n} rounds of the loop")

    async with running(consumer):
        await rounds(1)  # started: the start-up reclaim left the young entries alone
        await age(inbox, redis, partition, stuck)
        await rounds(3)
        assert sessions.got == []  # old enough, but not time to reclaim yet

        clock.t = 30.0
        await wait_for(lambda: len(sessions.got) == 3, "the reclaimed entries")
        assert [e.ack_token for e in sessions.got] == stuck
        assert await pending_ids(inbox, partition, "dead-host") == later  # still young

        # The next reclaim is 30 s after that one, not at every round.
        await age(inbox, redis, partition, later)
        clock.t = 59.0
        await rounds(3)
        assert len(sessions.got) == 3
        clock.t = 60.0
        await wait_for(lambda: len(sessions.got) == 5, "the second reclaim")

    assert [e.ack_token for e in sessions.got] == stuck + later
    assert sessions.keys == [f"wamid.s{i}" for i in range(3)] + ["wamid.l0", "wamid.l1"]
    mine = await pending_ids(inbox, partition, consumer_name(partition))
    assert mine == stuck + later
