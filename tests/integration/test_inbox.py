"""The inbox against a real Valkey: atomic dedupe + append, partitions, consumer-group recovery."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
from collections import defaultdict

import pytest
import redis.asyncio as aioredis

from tests.support.servers import free_port
from whatsray.inbox import (
    MIN_DEDUPE_TTL_S,
    Inbox,
    InboxError,
    InboxLayoutMismatch,
    InboxUnavailable,
    PartitionBacklog,
    partition_for,
)
from whatsray.whatsapp.events import ChatKey, Event, MessageEvent, StatusEvent, StatusValue
from whatsray.whatsapp.message_content import MessageType, TextContent

pytestmark = pytest.mark.integration

PHONE_NUMBER_ID = "123456789"


def chat(user: str) -> ChatKey:
    return ChatKey(phone_number_id=PHONE_NUMBER_ID, user=user)


def message(user: str, wamid: str, text: str = "hi") -> MessageEvent:
    return MessageEvent(
        idempotency_key=wamid,
        chat=chat(user),
        phone_number_id=PHONE_NUMBER_ID,
        message_id=wamid,
        type=MessageType.TEXT,
        content=TextContent(body=text),
        from_phone=user,
    )


def status(user: str, wamid: str, value: StatusValue) -> StatusEvent:
    return StatusEvent(
        idempotency_key=f"{wamid}:{value.value}",
        chat=chat(user),
        message_id=wamid,
        status=value,
        recipient_id=user,
    )


def users_in_distinct_partitions(partitions: int, count: int) -> list[str]:
    found: dict[int, str] = {}
    n = 0
    while len(found) < count:
        user = f"1555{n:07d}"
        found.setdefault(partition_for(chat(user), partitions), user)
        n += 1
    return list(found.values())


@pytest.fixture
async def inbox(redis: aioredis.Redis) -> Inbox:
    return Inbox(redis, partitions=4)


async def test_append_then_read_back_typed_events_in_order_per_partition(inbox: Inbox) -> None:
    users = [f"1555000{n:04d}" for n in range(12)]
    events: list[Event] = [
        message(user, f"wamid.{user}.{i}", f"message {i}") for i in range(3) for user in users
    ]
    result = await inbox.append(events)

    assert [o.duplicate for o in result.outcomes] == [False] * len(events)
    expected: dict[int, list[Event]] = defaultdict(list)
    for event, outcome in zip(events, result.outcomes, strict=True):
        assert event.chat is not None
        assert outcome.partition == partition_for(event.chat, 4)
        assert outcome.idempotency_key == event.idempotency_key
        expected[outcome.partition].append(event)
    assert len(expected) > 1  # the test means something only if chats spread

    await inbox.ensure_groups()
    for partition in range(4):
        entries = await inbox.read_new(partition, "host", count=100)
        assert [e.event for e in entries] == expected[partition]
        assert all(isinstance(e.event, MessageEvent) for e in entries)
        assert {e.delivery_count for e in entries} <= {1}
        assert all(e.partition == partition and not e.is_poison for e in entries)
        ids = [e.entry_id for e in entries]
        assert ids == [o.entry_id for o in result.outcomes if o.partition == partition]


async def test_one_chats_events_share_a_partition_in_arrival_order(inbox: Inbox) -> None:
    first = await inbox.append([message("15550001111", "wamid.A", "first")])
    sent = await inbox.append([status("15550001111", "wamid.out1", StatusValue.SENT)])
    second = await inbox.append([message("15550001111", "wamid.B", "second")])
    partitions = {r.outcomes[0].partition for r in (first, sent, second)}
    assert partitions == {partition_for(chat("15550001111"), 4)}

    partition = partitions.pop()
    await inbox.ensure_group(partition)
    entries = await inbox.read_new(partition, "host")
    assert [e.event.idempotency_key for e in entries if e.event] == [
        "wamid.A",
        "wamid.out1:sent",
        "wamid.B",
    ]


async def test_the_same_event_five_times_is_stored_once(inbox: Inbox) -> None:
    event = message("15550002222", "wamid.dup")
    results = [await inbox.append([event]) for _ in range(5)]

    assert [r.outcomes[0].duplicate for r in results] == [False, True, True, True, True]
    assert len({r.outcomes[0].entry_id for r in results}) == 1
    partition = results[0].outcomes[0].partition
    assert await inbox.length(partition) == 1


async def test_the_same_event_five_times_concurrently_is_stored_once(
    inbox: Inbox, valkey_url: str
) -> None:
    # Five clients, as five ingress replicas would be: the script's isolation decides.
    clients = [aioredis.Redis.from_url(valkey_url) for _ in range(5)]
    try:
        inboxes = [Inbox(c, partitions=4) for c in clients]
        event = message("15550003333", "wamid.race")
        results = await asyncio.gather(*(i.append([event]) for i in inboxes))
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))

    assert sorted(r.outcomes[0].duplicate for r in results) == [False, True, True, True, True]
    assert len({r.outcomes[0].entry_id for r in results}) == 1
    assert await inbox.length(results[0].outcomes[0].partition) == 1


async def test_duplicates_within_one_batch_are_stored_once(inbox: Inbox) -> None:
    event = message("15550004444", "wamid.twice")
    result = await inbox.append([event, message("15550004444", "wamid.other"), event])
    assert [o.duplicate for o in result.outcomes] == [False, False, True]
    assert result.outcomes[2].entry_id == result.outcomes[0].entry_id
    assert [o.index for o in result.new] == [0, 1]
    assert [o.index for o in result.duplicates] == [2]
    assert await inbox.length(result.outcomes[0].partition) == 2


async def test_dedupe_keys_live_at_least_seven_days(inbox: Inbox, redis: aioredis.Redis) -> None:
    result = await inbox.append([message("15550005555", "wamid.ttl")])
    key = inbox.dedupe_key("wamid.ttl")
    ttl = await redis.ttl(key)
    assert MIN_DEDUPE_TTL_S - 60 <= ttl <= MIN_DEDUPE_TTL_S
    assert await redis.get(key) == result.outcomes[0].entry_id.encode()
    # A redelivery does not extend the horizon: Meta's 7 days count from the first delivery.
    await redis.expire(key, 1000)
    await inbox.append([message("15550005555", "wamid.ttl")])
    assert await redis.ttl(key) <= 1000


async def test_a_shorter_dedupe_ttl_is_refused(redis: aioredis.Redis) -> None:
    with pytest.raises(ValueError, match="7 days"):
        Inbox(redis, partitions=4, dedupe_ttl_s=24 * 3600)
    with pytest.raises(ValueError, match="partitions"):
        Inbox(redis, partitions=0)


async def test_pending_entries_are_read_again_after_a_crash(inbox: Inbox, valkey_url: str) -> None:
    await inbox.append([message("15550006666", f"wamid.p{i}", str(i)) for i in range(3)])
    partition = partition_for(chat("15550006666"), 4)
    await inbox.ensure_group(partition)
    delivered = await inbox.read_new(partition, "host-1")
    assert len(delivered) == 3
    # The host dies here, before acking. Its successor has the same name and a new client.

    client = aioredis.Redis.from_url(valkey_url)
    try:
        restarted = Inbox(client, partitions=4)
        await restarted.ensure_group(partition)  # idempotent
        pending = await restarted.read_pending(partition, "host-1")
        assert [e.entry_id for e in pending] == [e.entry_id for e in delivered]
        assert [e.event for e in pending] == [e.event for e in delivered]
        assert [e.delivery_count for e in pending] == [2, 2, 2]
        assert await restarted.read_new(partition, "host-1") == ()

        # Paging: after the last id seen, nothing more.
        assert await restarted.read_pending(partition, "host-1", after=pending[-1].entry_id) == ()
        page = await restarted.read_pending(partition, "host-1", count=2)
        assert [e.entry_id for e in page] == [e.entry_id for e in delivered[:2]]
    finally:
        await client.aclose()


async def test_stale_entries_of_a_dead_consumer_are_claimed(inbox: Inbox) -> None:
    await inbox.append([message("15550007777", f"wamid.c{i}") for i in range(3)])
    partition = partition_for(chat("15550007777"), 4)
    await inbox.ensure_group(partition)
    taken = await inbox.read_new(partition, "dead-host")
    assert len(taken) == 3

    not_yet = await inbox.claim_stale(partition, "new-host", min_idle_ms=3_600_000)
    assert not_yet.entries == ()
    assert not_yet.done

    claimed = await inbox.claim_stale(partition, "new-host", min_idle_ms=0, count=10)
    assert [e.entry_id for e in claimed.entries] == [e.entry_id for e in taken]
    assert [e.event for e in claimed.entries] == [e.event for e in taken]
    assert [e.delivery_count for e in claimed.entries] == [2, 2, 2]
    assert claimed.done
    assert await inbox.read_pending(partition, "dead-host") == ()
    mine = await inbox.read_pending(partition, "new-host")
    assert [e.entry_id for e in mine] == [e.entry_id for e in taken]


async def test_claim_stale_pages_with_a_cursor(inbox: Inbox) -> None:
    await inbox.append([message("15550007778", f"wamid.page{i}") for i in range(5)])
    partition = partition_for(chat("15550007778"), 4)
    await inbox.ensure_group(partition)
    await inbox.read_new(partition, "dead-host")

    seen: list[str] = []
    start = "0-0"
    while True:
        batch = await inbox.claim_stale(partition, "new-host", 0, count=2, start_id=start)
        seen += [e.entry_id for e in batch.entries]
        if batch.done:
            break
        start = batch.next_start_id
    assert len(seen) == 5


async def test_ack_removes_from_pending_and_keeps_the_log(inbox: Inbox) -> None:
    await inbox.append([message("15550008888", f"wamid.a{i}") for i in range(3)])
    partition = partition_for(chat("15550008888"), 4)
    assert await inbox.pending_count(partition) == 0  # no group yet
    await inbox.ensure_group(partition)
    entries = await inbox.read_new(partition, "host")
    assert await inbox.pending_count(partition) == 3

    assert await inbox.ack(partition, [entries[0].entry_id, entries[1].entry_id]) == 2
    assert await inbox.pending_count(partition) == 1
    assert [e.entry_id for e in await inbox.read_pending(partition, "host")] == [
        entries[2].entry_id
    ]
    assert await inbox.ack(partition, [entries[0].entry_id]) == 0  # already acked
    assert await inbox.ack(partition, []) == 0
    assert await inbox.length(partition) == 3


async def test_a_poison_entry_comes_back_as_poison(inbox: Inbox, redis: aioredis.Redis) -> None:
    partition = 1
    stream = inbox.stream_key(partition)
    await inbox.ensure_group(partition)
    await redis.xadd(stream, {"v": "1", "event": "not json"})
    await redis.xadd(stream, {"something": "else"})
    await redis.xadd(stream, {"v": "99", "event": "{}"})
    await redis.xadd(stream, {"v": "1", "event": '{"kind": "message", "idempotency_key": "x"}'})
    user = next(f"1555{n:07d}" for n in range(1000) if partition_for(chat(f"1555{n:07d}"), 4) == 1)
    await inbox.append([message(user, "wamid.fine")])

    entries = await inbox.read_new(partition, "host")
    assert [e.is_poison for e in entries] == [True, True, True, True, False]
    assert entries[0].raw == {"v": "1", "event": "not json"}
    assert "does not decode" in (entries[0].poison or "")
    assert entries[1].raw == {"something": "else"}
    assert "no 'event' field" in (entries[1].poison or "")
    assert "version '99'" in (entries[2].poison or "")
    assert "does not decode" in (entries[3].poison or "")
    assert entries[4].event is not None and entries[4].event.idempotency_key == "wamid.fine"

    assert await inbox.ack(partition, [e.entry_id for e in entries[:4]]) == 4
    assert await inbox.pending_count(partition) == 1


async def test_a_pending_entry_deleted_from_the_stream_is_poison(
    inbox: Inbox, redis: aioredis.Redis
) -> None:
    result = await inbox.append([message("15550009999", "wamid.gone")])
    partition, entry_id = result.outcomes[0].partition, result.outcomes[0].entry_id
    await inbox.ensure_group(partition)
    await inbox.read_new(partition, "host")
    await redis.xdel(inbox.stream_key(partition), entry_id)

    pending = await inbox.read_pending(partition, "host")
    assert [(e.entry_id, e.is_poison) for e in pending] == [(entry_id, True)]
    assert "deleted" in (pending[0].poison or "")


async def test_the_script_survives_a_script_flush(inbox: Inbox, redis: aioredis.Redis) -> None:
    from whatsray.inbox.append_script import APPEND_SCRIPT_SHA

    await inbox.append([message("15550001212", "wamid.before")])
    await redis.script_flush()
    assert await redis.script_exists(APPEND_SCRIPT_SHA) == [False]

    result = await inbox.append([message("15550001212", "wamid.after")])
    assert not result.outcomes[0].duplicate
    assert await redis.script_exists(APPEND_SCRIPT_SHA) == [True]
    assert (await inbox.append([message("15550001212", "wamid.before")])).outcomes[0].duplicate


async def test_a_failing_batch_stores_nothing(inbox: Inbox, redis: aioredis.Redis) -> None:
    first, second = users_in_distinct_partitions(4, 2)
    good, bad = message(first, "wamid.good"), message(second, "wamid.bad")
    # Something else squats on the second event's stream key: its XADD could not succeed.
    bad_partition = partition_for(chat(second), 4)
    await redis.set(inbox.stream_key(bad_partition), "not a stream")

    with pytest.raises(InboxError, match="WRONGTYPE") as raised:
        await inbox.append([good, bad])
    assert not isinstance(raised.value, InboxUnavailable)
    assert await redis.exists(inbox.dedupe_key("wamid.good")) == 0
    assert await inbox.length(partition_for(chat(first), 4)) == 0

    await redis.delete(inbox.stream_key(bad_partition))
    result = await inbox.append([good, bad])
    assert [o.duplicate for o in result.outcomes] == [False, False]


async def test_an_unreachable_redis_raises_inbox_unavailable() -> None:
    inbox = Inbox.from_url(f"redis://127.0.0.1:{free_port()}", partitions=4)
    async with inbox:
        with pytest.raises(InboxUnavailable, match="append"):
            await inbox.append([message("15550001313", "wamid.lost")])
        with pytest.raises(InboxUnavailable):
            await inbox.read_new(0, "host")
        with pytest.raises(InboxUnavailable):
            await inbox.ack(0, ["1-0"])
        assert await inbox.ping() is False


async def test_ping_when_reachable(inbox: Inbox) -> None:
    assert await inbox.ping() is True


async def test_reading_recreates_a_missing_group(inbox: Inbox, redis: aioredis.Redis) -> None:
    await inbox.append([message("15550001414", "wamid.g1")])
    partition = partition_for(chat("15550001414"), 4)
    await inbox.ensure_group(partition)
    await redis.xgroup_destroy(inbox.stream_key(partition), inbox.group)

    entries = await inbox.read_new(partition, "host")
    assert [e.event.idempotency_key for e in entries if e.event] == ["wamid.g1"]


async def test_the_partition_count_is_checked_against_redis(redis: aioredis.Redis) -> None:
    await Inbox(redis, partitions=4).check_layout()
    await Inbox(redis, partitions=4).check_layout()
    with pytest.raises(InboxLayoutMismatch, match="4 partitions"):
        await Inbox(redis, partitions=8).check_layout()


async def test_maxlen_trims_the_log_approximately(redis: aioredis.Redis) -> None:
    inbox = Inbox(redis, partitions=1, maxlen=10)
    for n in range(5):
        await inbox.append([message("15550001515", f"wamid.t{n}.{i}") for i in range(100)])
    assert 10 <= await inbox.length(0) < 500


async def test_read_new_blocks_briefly_and_checks_the_socket_timeout(
    valkey_url: str, redis: aioredis.Redis
) -> None:
    async with Inbox.from_url(valkey_url, partitions=2, socket_timeout_s=1.0) as inbox:
        await inbox.ensure_group(0)
        assert await inbox.read_new(0, "host", block_ms=20) == ()
        with pytest.raises(ValueError, match="socket_timeout"):
            await inbox.read_new(0, "host", block_ms=1000)


async def test_a_resp3_client_reads_the_same(valkey_url: str, redis: aioredis.Redis) -> None:
    client = aioredis.Redis.from_url(valkey_url, protocol=3, decode_responses=True)
    try:
        inbox = Inbox(client, partitions=2)
        result = await inbox.append([message("15550001616", "wamid.r3")])
        partition = result.outcomes[0].partition
        await inbox.ensure_group(partition)
        entries = await inbox.read_new(partition, "host")
        assert [e.entry_id for e in entries] == [result.outcomes[0].entry_id]
        assert entries[0].event == message("15550001616", "wamid.r3")
        assert [e.entry_id for e in await inbox.read_pending(partition, "host")] == [
            entries[0].entry_id
        ]
    finally:
        await client.aclose()


async def test_values_and_errors_survive_pickling(inbox: Inbox, redis: aioredis.Redis) -> None:
    # Ray pickles what crosses processes: results, entries (poison ones too) and errors.
    result = await inbox.append([message("15550001717", "wamid.pickle")])
    partition = result.outcomes[0].partition
    await redis.xadd(inbox.stream_key(partition), {"v": "1", "event": "garbage"})
    await inbox.ensure_group(partition)
    entries = await inbox.read_new(partition, "host")
    claimed = await inbox.claim_stale(partition, "other", min_idle_ms=0)

    for value in (result, *entries, claimed):
        assert pickle.loads(pickle.dumps(value)) == value
    assert [e.is_poison for e in entries] == [False, True]
    error = pickle.loads(pickle.dumps(InboxUnavailable("inbox unavailable (append): down")))
    assert isinstance(error, InboxUnavailable)
    assert str(error) == "inbox unavailable (append): down"


async def test_out_of_memory_is_unavailable_and_stores_nothing(
    inbox: Inbox, redis: aioredis.Redis
) -> None:
    # noeviction + maxmemory reached: Redis refuses the script up front; the ingress says 503.
    await redis.config_set("maxmemory", 1)
    try:
        with pytest.raises(InboxUnavailable, match="maxmemory"):
            await inbox.append([message("15550001818", "wamid.oom")])
    finally:
        await redis.config_set("maxmemory", 0)
    assert await redis.exists(inbox.dedupe_key("wamid.oom")) == 0
    assert await inbox.length(partition_for(chat("15550001818"), 4)) == 0


async def test_backlog_counts_unread_then_pending_entries_with_the_oldest_ones_age(
    inbox: Inbox,
) -> None:
    [user] = users_in_distinct_partitions(4, 1)
    partition = partition_for(chat(user), 4)
    assert await inbox.backlog(partition) == PartitionBacklog(partition, 0, 0, 0.0)  # no stream
    await inbox.append([message(user, f"wamid.backlog.{i}") for i in range(2)])
    assert await inbox.backlog(partition) == PartitionBacklog(partition, 2, 0, 0.0)  # no group
    await inbox.ensure_group(partition)  # from the stream's start: both are still to read
    await inbox.append([message(user, "wamid.backlog.2")])
    assert await inbox.backlog(partition) == PartitionBacklog(partition, 3, 0, 0.0)

    [first, *_] = await inbox.read_new(partition, "host", count=2)
    appended_ms = int(first.entry_id.split("-")[0])
    backlog = await inbox.backlog(partition, now_ms=appended_ms + 90_000)
    assert (backlog.lag, backlog.pending) == (1, 2)
    assert backlog.oldest_pending_s == 90.0
    await inbox.ack(partition, [first.entry_id])
    assert (await inbox.backlog(partition)).pending == 1


async def test_more_concurrent_appends_than_connections_wait_for_one(
    valkey_url: str, redis: aioredis.Redis
) -> None:
    # A backlog at the ingress: many requests at once, a small pool. Each waits its turn for a
    # connection instead of failing (redis-py's default pool raises "Too many connections").
    events = [message(f"1555{n:07d}", f"wamid.pool{n}") for n in range(200)]
    async with Inbox.from_url(valkey_url, partitions=4, max_connections=4) as inbox:
        results = await asyncio.gather(*(inbox.append([event]) for event in events))
        assert inbox._redis.connection_pool.max_connections == 4
    assert all(not r.outcomes[0].duplicate for r in results)
    assert sum([await Inbox(redis, partitions=4).length(p) for p in range(4)]) == 200

    # The control: the same burst through an unbounded-failing default pool of the same size.
    client = aioredis.Redis.from_url(valkey_url, max_connections=4)
    try:
        burst = [message(f"1556{n:07d}", f"wamid.burst{n}") for n in range(200)]
        inbox = Inbox(client, partitions=4)
        outcomes = await asyncio.gather(*(inbox.append([e]) for e in burst), return_exceptions=True)
    finally:
        await client.aclose()
    assert any(isinstance(o, InboxUnavailable) for o in outcomes)


async def test_a_call_that_waits_too_long_for_a_connection_is_unavailable(
    valkey_url: str, redis: aioredis.Redis
) -> None:
    async with Inbox.from_url(
        valkey_url, partitions=4, max_connections=1, pool_timeout_s=0.2
    ) as inbox:
        await inbox.ensure_group(0)
        reader = asyncio.create_task(inbox.read_new(0, "host", block_ms=5000))  # holds the one
        try:
            for _ in range(1000):  # until the read blocks in Valkey
                if any(c.get("cmd") == "xreadgroup" for c in await redis.client_list()):
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the read never blocked")
            with pytest.raises(InboxUnavailable, match="No connection available"):
                await inbox.append([message("15550001818", "wamid.starved")])
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
    assert await redis.exists(inbox.dedupe_key("wamid.starved")) == 0
    with pytest.raises(ValueError, match="max_connections"):
        Inbox.from_url(valkey_url, partitions=4, max_connections=0)
