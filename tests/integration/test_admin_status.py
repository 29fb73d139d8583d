"""`GET /api/status` in-process (tests/support/admin_stack.py): the partitions' backlog from a real
Valkey, the outbox's queue from a real `Outbox`, dead letters and handoffs from a real DuckDB
`Store`, behind the admin token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.support.admin_stack import PNID, Admin, admin_stack
from whatsray.inbox import Inbox, partition_for
from whatsray.whatsapp.events import ChatKey, MessageEvent
from whatsray.whatsapp.message_content import MessageType, TextContent

pytestmark = pytest.mark.integration

PARTITIONS = 2


def message(user: str, n: int) -> MessageEvent:
    wamid = f"wamid.status.{user}.{n}"
    return MessageEvent(
        idempotency_key=wamid,
        chat=ChatKey(phone_number_id=PNID, user=user),
        phone_number_id=PNID,
        message_id=wamid,
        type=MessageType.TEXT,
        content=TextContent(body=f"m{n}"),
        from_phone=user,
    )


def user_in(partition: int) -> str:
    return next(
        user
        for user in (f"1555200{n:04d}" for n in range(1000))
        if partition_for(ChatKey(phone_number_id=PNID, user=user), PARTITIONS) == partition
    )


async def status(admin: Admin) -> dict[str, Any]:
    response = await admin.api.get("/api/status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["unavailable"] == []
    return body


async def test_status_shows_each_partitions_backlog(tmp_path: Path, redis: aioredis.Redis) -> None:
    inbox = Inbox(redis, partitions=PARTITIONS)
    await inbox.ensure_groups()
    async with admin_stack(tmp_path, inbox) as admin:
        quiet = await status(admin)
        assert [(p["partition"], p["lag"], p["pending"]) for p in quiet["partitions"]] == [
            (0, 0, 0),
            (1, 0, 0),
        ]
        await inbox.append([message(user_in(0), n) for n in range(3)])
        await inbox.append([message(user_in(1), 0)])
        [read] = await inbox.read_new(0, "host-0", count=1)  # read, never acked: pending

        busy = await status(admin)
        zero, one = busy["partitions"]
        assert (zero["lag"], zero["pending"], one["lag"], one["pending"]) == (2, 1, 1, 0)
        assert zero["oldest_pending_s"] >= 0.0 and one["oldest_pending_s"] == 0.0
        assert zero["sessions_active"] is None  # no session host in this deployment

        await inbox.ack(0, [read.entry_id])
        zero = (await status(admin))["partitions"][0]
        assert (zero["lag"], zero["pending"]) == (2, 0)


async def test_status_shows_whether_the_inbox_survives_a_redis_restart(
    tmp_path: Path, redis: aioredis.Redis
) -> None:
    async with admin_stack(tmp_path, Inbox(redis, partitions=PARTITIONS)) as admin:
        persistent = (await status(admin))["inbox_persistence"]
        assert persistent == {"aof_enabled": True, "rdb_save": "", "warning": None}

        await redis.config_set("appendonly", "no")
        try:
            volatile = (await status(admin))["inbox_persistence"]
        finally:
            await redis.config_set("appendonly", "yes")
        assert volatile["aof_enabled"] is False
        assert "acknowledged messages would be lost" in volatile["warning"]


async def test_status_shows_the_outbox_queue_while_meta_holds_a_send(tmp_path: Path) -> None:
    async with admin_stack(tmp_path) as admin:
        user = "15552100001"
        await admin.user_says(user)
        [idle] = (await status(admin))["outboxes"]
        assert idle["phone_number_id"] == PNID
        assert (idle["queue_depth"], idle["oldest_pending_s"], idle["waiting_sends"]) == (
            0,
            None,
            0,
        )
        assert idle["throughput_mps"] == 80.0 and idle["tokens_available"] > 0

        # "Meta" takes 2 s to answer each request: the send is recorded and not yet accepted.
        slow = {"latency_s": 2.0}
        assert (await admin.control.post("/emulator/faults", json=slow)).status_code == 200
        sent = await admin.send(user, "held by Meta")
        assert sent.status_code == 202, sent.text
        [held] = (await status(admin))["outboxes"]
        assert held["queue_depth"] == 1 and held["oldest_pending_s"] is not None

        record = await admin.settled(sent.json()["outbound_id"], within_s=20)
        assert record.status != "pending"
        [drained] = (await status(admin))["outboxes"]
        assert (drained["queue_depth"], drained["oldest_pending_s"]) == (0, None)
        assert drained["pair_buckets"] == 1  # one recipient's pair rate is tracked


async def test_status_counts_dead_letters_not_replayed_and_active_handoffs(
    tmp_path: Path,
) -> None:
    async with admin_stack(tmp_path) as admin:
        user = "15552100002"
        await admin.user_says(user)
        assert ((await status(admin))["dead_letters"], (await status(admin))["handoffs"]) == (0, 0)

        faults = {"recipient_errors": {user: {"code": 131026}}}  # refused for good: dead letter
        assert (await admin.control.post("/emulator/faults", json=faults)).status_code == 200
        sent = await admin.send(user, "lost")
        assert (await admin.settled(sent.json()["outbound_id"])).status == "dead"
        assert (await admin.control.delete("/emulator/faults")).status_code == 200
        await admin.store.update_chat(f"{PNID}:{user}", handoff=True)
        counted = await status(admin)
        assert (counted["dead_letters"], counted["handoffs"]) == (1, 1)

        [letter] = (await admin.api.get("/api/dead-letters")).json()["dead_letters"]
        replay = await admin.api.post(f"/api/dead-letters/{letter['dead_letter_id']}/replay")
        assert replay.status_code == 202, replay.text
        await admin.store.update_chat(f"{PNID}:{user}", handoff=False)
        settled = await status(admin)
        assert (settled["dead_letters"], settled["handoffs"]) == (0, 0)
        assert settled["next_runs"] is None  # no scheduler in this deployment


async def test_status_needs_the_admin_token(tmp_path: Path) -> None:
    async with admin_stack(tmp_path) as admin:
        missing = await admin.anon.get("/api/status")
        assert missing.status_code == 401
        assert missing.json()["error"] == "unauthorized"
        wrong = await admin.anon.get("/api/status", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403
        assert wrong.json()["error"] == "forbidden"
