"""Status batching (several statuses in one signed webhook body, as Meta sends them) and the
non-blocking count of pending webhook deliveries."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from emulator_harness import (
    APP_SECRET,
    AUTH,
    OTHER_USER,
    USER,
    Harness,
    Receiver,
    emulator_harness,
)

from whatsray.whatsapp.emulator import BusinessNumber, StatusDelays
from whatsray.whatsapp.events import StatusEvent
from whatsray.whatsapp.parsing import parse_webhook
from whatsray.whatsapp.signature import SIGNATURE_HEADER, verify_signature

BATCHING = {"status_batch_window_s": 0.005}
SENT_ONLY = StatusDelays(sent=0, delivered=None, read=None)


def status_bodies(h: Harness) -> list[list[StatusEvent]]:
    """The status events of each accepted POST that carried statuses, POST by POST."""
    bodies = []
    for delivery in h.receiver.accepted:
        events = [e for e in parse_webhook(delivery.body) if isinstance(e, StatusEvent)]
        if events:
            bodies.append(events)
    return bodies


async def open_windows(h: Harness, *users: str) -> None:
    for user in users:
        await h.control("POST", "windows", json={"user": user, "open": True})


async def test_statuses_due_together_share_one_signed_body() -> None:
    async with emulator_harness(**BATCHING) as h:
        await open_windows(h, USER, OTHER_USER)
        first = (await h.send(USER)).json()["messages"][0]["id"]
        second = (await h.send(OTHER_USER)).json()["messages"][0]["id"]
        await h.advance(5)

        [delivery] = h.receiver.accepted
        header = delivery.headers[SIGNATURE_HEADER.lower()]
        assert verify_signature(APP_SECRET, delivery.body, header)
        payload = json.loads(delivery.body)
        [entry] = payload["entry"]
        [change] = entry["changes"]
        assert change["field"] == "messages"
        assert len(change["value"]["statuses"]) == 6

        events = h.receiver.statuses()
        assert Counter((e.message_id, e.status.value) for e in events) == Counter(
            (wamid, status) for wamid in (first, second) for status in ("sent", "delivered", "read")
        )
        for wamid in (first, second):  # each message's statuses in their logical order
            assert [e.status.value for e in events if e.message_id == wamid] == [
                "sent",
                "delivered",
                "read",
            ]
        [attempt] = await h.control("GET", "webhooks", params={"kind": "status"})
        assert attempt["events"] == 6 and attempt["delivered"] is True


async def test_statuses_of_several_numbers_are_grouped_by_number() -> None:
    numbers = (
        BusinessNumber(id="106540352242922", display_phone_number="15550783881"),
        BusinessNumber(id="109876543210987", display_phone_number="15550199999"),
    )
    async with emulator_harness(
        phone_numbers=numbers, window_enforcement=False, status_delays=SENT_ONLY, **BATCHING
    ) as h:
        body = {"messaging_product": "whatsapp", "to": USER, "type": "text", "text": {"body": "x"}}
        for number in numbers:
            response = await h.client.post(f"/v25.0/{number.id}/messages", json=body, headers=AUTH)
            assert response.status_code == 200
        await h.advance(1)

        [delivery] = h.receiver.accepted
        changes = json.loads(delivery.body)["entry"][0]["changes"]
        assert [c["value"]["metadata"]["phone_number_id"] for c in changes] == [
            n.id for n in numbers
        ]
        assert sorted(e.phone_number_id for e in h.receiver.statuses()) == sorted(
            n.id for n in numbers
        )


async def test_a_zero_window_sends_one_status_per_post() -> None:
    async with emulator_harness(status_batch_window_s=0.0) as h:
        await open_windows(h, USER, OTHER_USER)
        await h.send(USER)
        await h.send(OTHER_USER)
        await h.advance(5)
        assert [len(events) for events in status_bodies(h)] == [1] * 6


async def test_a_batch_holds_at_most_the_configured_number() -> None:
    async with emulator_harness(status_batch_max=4, **BATCHING) as h:
        await open_windows(h, USER, OTHER_USER)
        await h.send(USER)
        await h.send(OTHER_USER)
        await h.advance(5)
        assert sorted(len(events) for events in status_bodies(h)) == [2, 4]
        assert len(h.receiver.statuses()) == 6


async def test_reordered_statuses_keep_their_reversed_order_inside_a_batch() -> None:
    async with emulator_harness(out_of_order_probability=1.0, **BATCHING) as h:
        await open_windows(h, USER)
        await h.send()
        start = int(h.clock.now())
        await h.advance(5)
        [events] = status_bodies(h)
        assert [e.status.value for e in events] == ["read", "delivered", "sent"]
        stamps = {e.status.value: int(e.raw["timestamp"]) for e in events}
        assert stamps == {"sent": start, "delivered": start + 1, "read": start + 2}


async def test_a_duplicate_status_comes_in_another_post() -> None:
    async with emulator_harness(duplicate_probability=1.0, **BATCHING) as h:
        await open_windows(h, USER)
        await h.send()
        await h.advance(5)
        bodies = status_bodies(h)
        assert len(bodies) >= 2
        for events in bodies:  # never the same status twice in one body
            keys = [(e.message_id, e.status.value) for e in events]
            assert len(keys) == len(set(keys))
        counts = Counter(e.status.value for e in h.receiver.statuses())
        assert counts == {"sent": 2, "delivered": 2, "read": 2}


async def test_a_failed_batch_is_retried_whole() -> None:
    receiver = Receiver(script=[500])
    async with emulator_harness(receiver, status_delays=SENT_ONLY, **BATCHING) as h:
        await open_windows(h, USER, OTHER_USER)
        await h.send(USER)
        await h.send(OTHER_USER)
        await h.advance(0)
        await h.advance(1)  # the first backoff

        first, second = receiver.deliveries
        assert (first.answered, second.answered) == (500, 200)
        assert first.body == second.body
        assert second.headers[SIGNATURE_HEADER.lower()] == first.headers[SIGNATURE_HEADER.lower()]
        attempts = await h.control("GET", "webhooks", params={"kind": "status"})
        assert [a["attempt"] for a in attempts] == [1, 2]
        assert len({a["job_id"] for a in attempts}) == 1
        assert [a["events"] for a in attempts] == [2, 2]
        assert sorted(e.recipient_id or "" for e in h.receiver.statuses()) == sorted(
            u.lstrip("+") for u in (USER, OTHER_USER)
        )


async def test_async_window_failures_are_batched_too() -> None:
    async with emulator_harness(window_failure_mode="async", **BATCHING) as h:
        await h.send(USER)
        await h.send(OTHER_USER)
        await h.advance(5)
        [events] = status_bodies(h)
        assert [e.status.value for e in events] == ["failed", "failed"]
        assert all([err.code for err in e.errors] == [131047] for e in events)


# --- pending deliveries -----------------------------------------------------------------------


async def pending(h: Harness) -> dict[str, Any]:
    counts: dict[str, Any] = await h.control("GET", "webhooks/pending")
    return counts


async def test_pending_counts_what_is_still_to_be_delivered() -> None:
    delays = StatusDelays(sent=1.0, delivered=2.0, read=3.0)
    async with emulator_harness(status_delays=delays, **BATCHING) as h:
        assert await pending(h) == {"pending": 0, "due": 0, "scheduled": 0, "in_flight": 0}
        await open_windows(h, USER)
        await h.send()
        assert await pending(h) == {"pending": 3, "due": 0, "scheduled": 3, "in_flight": 0}
        assert (await h.control("GET", "health"))["pending_webhooks"] == 3

        await h.advance(1.5)
        assert await pending(h) == {"pending": 2, "due": 0, "scheduled": 2, "in_flight": 0}
        assert [e.status.value for e in h.receiver.statuses()] == ["sent"]

        await h.advance(5)
        assert (await pending(h))["pending"] == 0
        assert len(h.receiver.statuses()) == 3


async def test_pending_counts_due_statuses_and_retries() -> None:
    receiver = Receiver(always=500)
    async with emulator_harness(receiver, status_delays=SENT_ONLY, **BATCHING) as h:
        await open_windows(h, USER)
        await h.send()
        counts = await pending(h)
        assert counts["pending"] == 1  # due, forming a batch or being sent: not yet delivered
        await h.advance(0)
        counts = await pending(h)
        assert counts == {"pending": 1, "due": 0, "scheduled": 1, "in_flight": 0}  # a retry
        for _ in range(10):
            await h.advance(10)
        assert (await pending(h))["pending"] == 0  # gave up
        assert len(receiver.deliveries) == h.config.delivery_max_attempts
