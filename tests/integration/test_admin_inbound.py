"""The admin API's inbound account: `GET /api/inbound/unresolved` and the quarantine routes, in
process over the real store file and a real Valkey (through tests/support/admin_stack.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.integration.test_admin_api import _check_auth, assert_refused
from tests.support.admin_stack import PNID, Admin, admin_stack
from tests.support.servers import free_port
from whatsray.inbox import Inbox, partition_for
from whatsray.inbox.entries import EVENTS, stream_entries
from whatsray.store.quarantine import QuarantineRecord, quarantine_id
from whatsray.whatsapp.events import ChatKey, Event, MessageEvent
from whatsray.whatsapp.message_content import MessageType, TextContent

pytestmark = pytest.mark.integration

PARTITIONS = 2


def message(user: str, wamid: str, number: str = PNID) -> MessageEvent:
    return MessageEvent(
        idempotency_key=wamid,
        chat=ChatKey(phone_number_id=number, user=user),
        phone_number_id=number,
        message_id=wamid,
        type=MessageType.TEXT,
        content=TextContent(body="hi"),
        from_phone=user,
    )


def record_of(
    events: list[MessageEvent], now: float, reason: str = "permanent"
) -> QuarantineRecord:
    ids = tuple(event.idempotency_key for event in events)
    return QuarantineRecord(
        quarantine_id=quarantine_id("commit_turn", ids),
        stage="commit_turn",
        reason=reason,
        error="PermanentError: the agent's config is broken",
        event_ids=ids,
        events="[" + ",".join(EVENTS.dump_json(event).decode() for event in events) + "]",
        chat=str(events[0].chat),
        created_at=now,
    )


def poison_record(now: float) -> QuarantineRecord:
    return QuarantineRecord(
        quarantine_id=quarantine_id("poison", ("1:1-0",)),
        stage="poison",
        reason="poison",
        error="event does not decode",
        event_ids=("1:1-0",),
        events=json.dumps([{"v": "1", "event": "not json"}]),
        created_at=now,
    )


async def stream_events(redis: aioredis.Redis, inbox: Inbox, partition: int) -> list[Event]:
    reply = await redis.xrange(inbox.stream_key(partition))
    return [EVENTS.validate_json(fields[b"event"]) for _, fields in stream_entries([[b"", reply]])]


async def outcome_of(admin: Admin, event: MessageEvent) -> str | None:
    """The stored message's outcome (the only inbound message of its chat)."""
    assert event.chat is not None
    assert await admin.store.count_messages(event.chat, direction="in") == 1
    for outcome in ("quarantined", "not_served", "recorded", "answered", None):
        if await admin.store.count_messages(event.chat, outcome=outcome):
            return outcome
    raise AssertionError(f"{event.message_id}: another outcome")


@pytest.fixture
async def inbox(redis: aioredis.Redis) -> Inbox:
    return Inbox(redis, partitions=PARTITIONS)


@pytest.fixture
async def admin(tmp_path: Path, inbox: Inbox) -> AsyncIterator[Admin]:
    async with admin_stack(tmp_path, inbox) as stack:
        yield stack


async def unresolved(admin: Admin, **params: Any) -> dict[str, Any]:
    response = await admin.api.get("/api/inbound/unresolved", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["count"] == len(body["items"])
    return body


async def test_the_new_routes_need_the_admin_token(admin: Admin) -> None:
    for method, path in [
        ("GET", "/api/inbound/unresolved"),
        ("GET", "/api/quarantine"),
        ("GET", "/api/quarantine/q-nope"),
        ("POST", "/api/quarantine/q-nope/replay"),
    ]:
        await _check_auth(admin, method, path, None)


async def test_unresolved_lists_undelivered_pending_and_stored_messages_without_outcome(
    admin: Admin, inbox: Inbox
) -> None:
    assert await unresolved(admin) == {
        "older_than_s": 60,
        "count": 0,
        "truncated": False,
        "items": [],
    }
    user = "15550004001"
    partition = partition_for(ChatKey(phone_number_id=PNID, user=user), PARTITIONS)
    appended = await inbox.append([message(user, "wamid.i1"), message(user, "wamid.i2")])
    first_id, second_id = (o.entry_id for o in appended.outcomes)
    assert (await unresolved(admin))["items"] == []  # younger than 60 s

    [item, _] = (await unresolved(admin, older_than_s=0))["items"]
    assert item == {
        "state": "undelivered",
        "age_s": item["age_s"],
        "kind": "message",
        "event_id": "wamid.i1",
        "chat": f"{PNID}:{user}",
        "partition": partition,
        "entry_id": first_id,
        "deliveries": None,
        "poison": None,
        "message_type": None,
    }
    assert item["age_s"] >= 0

    await inbox.ensure_groups()
    [read] = await inbox.read_new(partition, "host", count=1)  # read, never acked
    body = await unresolved(admin, older_than_s=0)
    assert [(i["state"], i["entry_id"], i["deliveries"]) for i in body["items"]] == [
        ("pending", first_id, 1),
        ("undelivered", second_id, None),
    ]

    await inbox.ack(partition, [read.entry_id])
    body = await unresolved(admin, older_than_s=0, limit=1)
    assert [(i["state"], i["entry_id"]) for i in body["items"]] == [("undelivered", second_id)]
    assert body["truncated"] is True  # the partition had `limit` of its own

    # A stored inbound message whose outcome is unset: its quarantine record was replayed.
    stored = message("15550004002", "wamid.stored")
    record = record_of([stored], admin.clock.now())
    await admin.store.quarantine(record, [stored])
    assert await admin.store.claim_quarantine_replay(record.quarantine_id)
    no_outcome = [
        i for i in (await unresolved(admin, older_than_s=0))["items"] if i["state"] == "no_outcome"
    ]
    assert no_outcome == [
        {
            "state": "no_outcome",
            "age_s": no_outcome[0]["age_s"],
            "kind": "message",
            "event_id": "wamid.stored",
            "chat": f"{PNID}:15550004002",
            "partition": None,
            "entry_id": None,
            "deliveries": None,
            "poison": None,
            "message_type": "text",
        }
    ]
    admin.clock.advance(120)  # the store's clock: the message is now 2 minutes without outcome
    assert [i["event_id"] for i in (await unresolved(admin))["items"]] == ["wamid.stored"]


async def test_unresolved_refuses_bad_parameters(admin: Admin) -> None:
    for query in ("older_than_s=-1", "limit=0", "limit=1001", "older_than_s=abc"):
        response = await admin.api.get(f"/api/inbound/unresolved?{query}")
        assert_refused(response, 422, "invalid_request", query.split("=")[0])


async def test_unknown_and_blank_query_parameters_are_refused(admin: Admin) -> None:
    # Behind the bearer scheme's dependency too, whichever way FastAPI's version declares it.
    for query in ("zzz=1", "include_replayed=false&=null"):
        response = await admin.api.get(f"/api/quarantine?{query}")
        assert_refused(response, 422, "invalid_request", "unknown parameter")


async def test_quarantine_lists_newest_first_and_gets_one(admin: Admin) -> None:
    now = admin.clock.now()
    older = record_of([message("15550004003", "wamid.q1")], now - 10)
    newer = record_of([message("15550004004", "wamid.q2")], now)
    for record in (older, newer):
        assert await admin.store.quarantine(record)

    listed = (await admin.api.get("/api/quarantine")).json()
    assert [q["quarantine_id"] for q in listed["quarantined"]] == [
        newer.quarantine_id,
        older.quarantine_id,
    ]
    assert listed["next_offset"] is None
    page = (await admin.api.get("/api/quarantine?limit=1")).json()
    assert [q["quarantine_id"] for q in page["quarantined"]] == [newer.quarantine_id]
    assert page["next_offset"] == 1

    one = await admin.api.get(f"/api/quarantine/{older.quarantine_id}")
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["reason"] == "permanent" and body["stage"] == "commit_turn"
    assert body["event_ids"] == ["wamid.q1"] and body["chat"] == f"{PNID}:15550004003"
    assert body["replayable"] is True and body["replayed_at"] is None
    assert body["events"][0]["message_id"] == "wamid.q1"

    assert_refused(await admin.api.get("/api/quarantine/q-nope"), 404, "not_found", "q-nope")


async def test_replay_appends_the_events_once(
    admin: Admin, inbox: Inbox, redis: aioredis.Redis
) -> None:
    event = message("15550004005", "wamid.replayed")
    partition = partition_for(event.chat, PARTITIONS)  # type: ignore[arg-type]
    await inbox.append([event])  # as the ingress did
    record = record_of([event], admin.clock.now())
    await admin.store.quarantine(record, [event])
    assert await outcome_of(admin, event) == "quarantined"

    response = await admin.api.post(f"/api/quarantine/{record.quarantine_id}/replay")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["replayed_at"] is not None and body["replayable"] is False
    assert await stream_events(redis, inbox, partition) == [event, event]  # past the dedupe key
    assert await outcome_of(admin, event) is None  # until its turn settles it

    again = await admin.api.post(f"/api/quarantine/{record.quarantine_id}/replay")
    assert_refused(again, 409, "already_replayed", record.quarantine_id)
    assert await stream_events(redis, inbox, partition) == [event, event]

    # Replayed records leave the default listing.
    assert (await admin.api.get("/api/quarantine")).json()["quarantined"] == []
    listed = (await admin.api.get("/api/quarantine?include_replayed=true")).json()
    assert [q["quarantine_id"] for q in listed["quarantined"]] == [record.quarantine_id]


async def test_replay_refuses_unknown_poison_and_unserved_records(
    admin: Admin, redis: aioredis.Redis
) -> None:
    assert_refused(await admin.api.post("/api/quarantine/q-nope/replay"), 404, "not_found")

    poison = poison_record(admin.clock.now())
    await admin.store.quarantine(poison)
    refused = await admin.api.post(f"/api/quarantine/{poison.quarantine_id}/replay")
    assert_refused(refused, 409, "not_replayable", "poison", "does not decode")

    elsewhere = record_of([message("15550004006", "wamid.other", "999000")], admin.clock.now())
    await admin.store.quarantine(elsewhere)
    refused = await admin.api.post(f"/api/quarantine/{elsewhere.quarantine_id}/replay")
    assert_refused(refused, 409, "number_not_configured", "999000")

    for record in (poison, elsewhere):  # nothing changed
        kept = await admin.store.get_quarantined(record.quarantine_id)
        assert kept is not None and kept.replayed_at is None
    assert await redis.keys("*stream*") == []


async def test_with_the_inbox_down_replay_is_503_and_leaves_the_record_as_it_was(
    tmp_path: Path,
) -> None:
    down = Inbox.from_url(f"redis://127.0.0.1:{free_port()}", partitions=PARTITIONS)
    async with down, admin_stack(tmp_path, down) as admin:
        event = message("15550004007", "wamid.down")
        record = record_of([event], admin.clock.now())
        await admin.store.quarantine(record, [event])

        response = await admin.api.post(f"/api/quarantine/{record.quarantine_id}/replay")
        assert_refused(response, 503, "inbox_unavailable", "nothing was replayed")
        kept = await admin.store.get_quarantined(record.quarantine_id)
        assert kept is not None and kept.replayed_at is None
        assert await outcome_of(admin, event) == "quarantined"

        listing = await admin.api.get("/api/inbound/unresolved")
        assert_refused(listing, 503, "inbox_unavailable")


async def test_without_an_inbox_only_the_quarantine_listings_are_mounted(tmp_path: Path) -> None:
    async with admin_stack(tmp_path) as admin:
        assert (await admin.api.get("/api/quarantine")).status_code == 200
        assert (await admin.api.get("/api/inbound/unresolved")).status_code == 404
        replay = await admin.api.post("/api/quarantine/q-x/replay")
        assert replay.status_code in (404, 405)


def test_the_openapi_document_describes_the_new_routes(admin: Admin) -> None:
    paths = admin.app.openapi()["paths"]
    assert "503" in paths["/api/inbound/unresolved"]["get"]["responses"]
    replay = paths["/api/quarantine/{quarantine_id}/replay"]["post"]
    assert {"404", "409", "503"} <= set(replay["responses"])
    assert replay["description"]
