"""The inbox's account of its entries against a real Valkey: what has no outcome yet (`unresolved`,
`unresolved_summary`) and replaying events past the dedupe check (`append_replay`)."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from tests.support.servers import free_port
from whatsray.inbox import Inbox, InboxError, InboxUnavailable, UnresolvedEntry, partition_for
from whatsray.inbox import account as inbox_account
from whatsray.inbox.entries import text_of
from whatsray.whatsapp.events import ChatKey, MessageEvent
from whatsray.whatsapp.message_content import MessageType, TextContent

pytestmark = pytest.mark.integration

PNID = "123456789"
PARTITIONS = 4


def chat(user: str) -> ChatKey:
    return ChatKey(phone_number_id=PNID, user=user)


def message(user: str, wamid: str) -> MessageEvent:
    return MessageEvent(
        idempotency_key=wamid,
        chat=chat(user),
        phone_number_id=PNID,
        message_id=wamid,
        type=MessageType.TEXT,
        content=TextContent(body="hi"),
        from_phone=user,
    )


def ms(entry_id: str) -> int:
    return int(entry_id.split("-")[0])


def users_in_two_partitions() -> tuple[str, str]:
    found: dict[int, str] = {}
    n = 0
    while len(found) < 2:
        user = f"1555{n:07d}"
        found.setdefault(partition_for(chat(user), PARTITIONS), user)
        n += 1
    first, second = found.values()
    return first, second


@pytest.fixture
async def inbox(redis: aioredis.Redis) -> Inbox:
    return Inbox(redis, partitions=PARTITIONS)


async def test_unresolved_lists_undelivered_then_pending_entries_until_acked(
    inbox: Inbox,
) -> None:
    user = "15550003001"
    partition = partition_for(chat(user), PARTITIONS)
    assert await inbox.unresolved(partition, 60) == []  # no stream yet

    result = await inbox.append([message(user, f"wamid.u{i}") for i in range(3)])
    ids = [o.entry_id for o in result.outcomes]
    late = ms(ids[-1]) + 60_000  # every entry is 60 s old by then

    # No group yet (no host started): all of them are undelivered.
    listed = await inbox.unresolved(partition, 60, now_ms=late)
    assert [(e.entry_id, e.state, e.deliveries) for e in listed] == [
        (i, "undelivered", None) for i in ids
    ]
    assert listed[0] == UnresolvedEntry(
        partition=partition,
        entry_id=ids[0],
        state="undelivered",
        age_s=(late - ms(ids[0])) / 1000,
        kind="message",
        event_id="wamid.u0",
        chat=f"{PNID}:{user}",
    )
    # Younger than `older_than_s`: not listed.
    assert await inbox.unresolved(partition, 60, now_ms=ms(ids[0]) + 59_999) == []
    assert len(await inbox.unresolved(partition, 0)) == 3

    await inbox.ensure_group(partition)
    await inbox.read_new(partition, "host", count=2)  # read, not acked
    listed = await inbox.unresolved(partition, 60, now_ms=late)
    assert [(e.entry_id, e.state, e.deliveries) for e in listed] == [
        (ids[0], "pending", 1),
        (ids[1], "pending", 1),
        (ids[2], "undelivered", None),
    ]
    assert [e.event_id for e in listed] == ["wamid.u0", "wamid.u1", "wamid.u2"]

    await inbox.read_pending(partition, "host")  # a restarted host reads them again
    await inbox.ack(partition, [ids[0]])
    listed = await inbox.unresolved(partition, 60, now_ms=late)
    assert [(e.entry_id, e.state, e.deliveries) for e in listed] == [
        (ids[1], "pending", 2),
        (ids[2], "undelivered", None),
    ]
    assert [e.entry_id for e in await inbox.unresolved(partition, 60, 1, now_ms=late)] == [ids[1]]

    await inbox.read_new(partition, "host")
    await inbox.ack(partition, ids[1:])
    assert await inbox.unresolved(partition, 0) == []


async def test_unresolved_names_poison_entries_and_entries_trimmed_while_pending(
    inbox: Inbox, redis: aioredis.Redis
) -> None:
    partition = 2
    stream = inbox.stream_key(partition)
    await inbox.ensure_group(partition)
    bad = text_of(await redis.xadd(stream, {"v": "1", "event": "not json"}))
    gone = text_of(await redis.xadd(stream, {"v": "1", "event": "{}"}))
    await inbox.read_new(partition, "host")
    await redis.xdel(stream, gone)

    listed = await inbox.unresolved(partition, 0)
    assert [(e.entry_id, e.state, e.kind) for e in listed] == [
        (bad, "pending", "poison"),
        (gone, "pending", "poison"),
    ]
    assert "does not decode" in (listed[0].poison or "")
    assert "deleted" in (listed[1].poison or "")
    assert listed[0].event_id is None and listed[0].chat is None


async def test_unresolved_summary_counts_past_the_cutoff_and_ages_the_oldest(
    inbox: Inbox,
) -> None:
    user = "15550003002"
    partition = partition_for(chat(user), PARTITIONS)
    assert await inbox.unresolved_summary(partition, 60) == (0, 0.0)  # no stream

    result = await inbox.append([message(user, f"wamid.s{i}") for i in range(3)])
    ids = [o.entry_id for o in result.outcomes]
    late = ms(ids[-1]) + 90_000
    assert await inbox.unresolved_summary(partition, 60, now_ms=late) == (
        3,
        (late - ms(ids[0])) / 1000,
    )
    # None is 60 s old yet: no count, but the oldest still has an age.
    young = ms(ids[0]) + 59_999
    assert await inbox.unresolved_summary(partition, 60, now_ms=young) == (0, 59.999)

    await inbox.ensure_group(partition)
    [first, second] = await inbox.read_new(partition, "host", count=2)
    assert await inbox.unresolved_summary(partition, 60, now_ms=late) == (
        3,
        (late - ms(ids[0])) / 1000,
    )
    await inbox.ack(partition, [first.entry_id])
    count, oldest = await inbox.unresolved_summary(partition, 60, now_ms=late)
    assert (count, oldest) == (2, (late - ms(ids[1])) / 1000)
    assert count == len(await inbox.unresolved(partition, 60, now_ms=late))

    await inbox.ack(partition, [second.entry_id])  # only the undelivered one is left
    assert await inbox.unresolved_summary(partition, 60, now_ms=late) == (
        1,
        (late - ms(ids[2])) / 1000,
    )
    await inbox.read_new(partition, "host")
    await inbox.ack(partition, [ids[2]])
    assert await inbox.unresolved_summary(partition, 60, now_ms=late) == (0, 0.0)


async def test_unresolved_summary_pages_through_a_big_backlog_up_to_its_cap(
    inbox: Inbox, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    partition = 0
    stream = inbox.stream_key(partition)
    pipe = redis.pipeline(transaction=False)
    for n in range(2500):
        pipe.xadd(stream, {"v": "1", "event": f"raw {n}"})
    await pipe.execute()
    assert (await inbox.unresolved_summary(partition, 0))[0] == 2500

    await inbox.ensure_group(partition)
    assert len(await inbox.read_new(partition, "host", count=1200)) == 1200
    assert (await inbox.unresolved_summary(partition, 0))[0] == 2500  # 1200 pending + 1300 lag

    monkeypatch.setattr(inbox_account, "UNRESOLVED_CAP", 1500)
    assert (await inbox.unresolved_summary(partition, 0))[0] == 1500


async def test_append_replay_appends_again_past_the_dedupe_key(
    inbox: Inbox, redis: aioredis.Redis
) -> None:
    first, second = users_in_two_partitions()
    events = [message(first, "wamid.r1"), message(second, "wamid.r2")]
    appended = await inbox.append(events)

    replayed = await inbox.append_replay(events)
    assert [(o.idempotency_key, o.partition, o.duplicate) for o in replayed.outcomes] == [
        (o.idempotency_key, o.partition, False) for o in appended.outcomes
    ]
    for before, after, event in zip(appended.outcomes, replayed.outcomes, events, strict=True):
        assert after.entry_id != before.entry_id
        await inbox.ensure_group(after.partition)
        read = await inbox.read_new(after.partition, "host")
        assert [(e.entry_id, e.event) for e in read] == [
            (before.entry_id, event),
            (after.entry_id, event),
        ]
    # The dedupe key still guards the first entry: Meta's redelivery is still a duplicate.
    assert (await inbox.append(events[:1])).outcomes[0].duplicate
    assert (await inbox.append_replay([])).outcomes == ()


async def test_append_replay_stores_nothing_when_a_stream_cannot_take_it(
    inbox: Inbox, redis: aioredis.Redis
) -> None:
    first, second = users_in_two_partitions()
    squatted = inbox.stream_key(partition_for(chat(second), PARTITIONS))
    await redis.set(squatted, "not a stream")
    with pytest.raises(InboxError, match="WRONGTYPE"):
        await inbox.append_replay([message(first, "wamid.x1"), message(second, "wamid.x2")])
    assert await inbox.length(partition_for(chat(first), PARTITIONS)) == 0


async def test_append_replay_and_the_listings_raise_unavailable_without_redis() -> None:
    async with Inbox.from_url(f"redis://127.0.0.1:{free_port()}", partitions=2) as inbox:
        with pytest.raises(InboxUnavailable, match="append_replay"):
            await inbox.append_replay([message("15550003003", "wamid.down")])
        with pytest.raises(InboxUnavailable):
            await inbox.unresolved(0, 60)
        with pytest.raises(InboxUnavailable):
            await inbox.unresolved_summary(0, 60)
