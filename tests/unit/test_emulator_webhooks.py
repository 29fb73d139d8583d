"""Status and inbound webhooks: Meta's shape and bytes, signatures, delays, duplicates,
reordering, and delivery retries with backoff on the emulator clock."""

from __future__ import annotations

import json
import socket

import httpx
from emulator_harness import APP_SECRET, USER, USER_DIGITS, Receiver, emulator_harness

from whatsray.whatsapp.emulator import (
    EmulatorConfig,
    FakeClock,
    StatusDelays,
    create_emulator_app,
    encode_webhook_body,
)
from whatsray.whatsapp.signature import SIGNATURE_HEADER, verify_signature


async def test_status_webhooks_are_signed_meta_shaped_and_echo_callback_data() -> None:
    async with emulator_harness() as h:
        await h.inbound()
        wamid = (await h.send(biz_opaque_callback_data="ticket/42")).json()["messages"][0]["id"]
        await h.advance(5)

        deliveries = h.receiver.accepted[1:]  # the first is the inbound message
        assert len(deliveries) == 3
        for delivery in deliveries:
            header = delivery.headers[SIGNATURE_HEADER.lower()]
            assert verify_signature(APP_SECRET, delivery.body, header)
            assert delivery.headers["content-type"] == "application/json"
        payload = json.loads(deliveries[0].body)
        assert payload["object"] == "whatsapp_business_account"
        change = payload["entry"][0]["changes"][0]
        assert change["field"] == "messages"
        assert change["value"]["metadata"]["phone_number_id"] == h.config.phone_numbers[0].id
        status = change["value"]["statuses"][0]
        assert status["id"] == wamid
        assert status["recipient_id"] == USER_DIGITS
        assert status["timestamp"] == str(int(h.clock.now() - 5))
        assert status["biz_opaque_callback_data"] == "ticket/42"
        assert status["pricing"]["pricing_model"] == "PMP"

        events = h.receiver.statuses()
        assert [(e.message_id, e.status.value) for e in events] == [
            (wamid, "sent"),
            (wamid, "delivered"),
            (wamid, "read"),
        ]
        assert events[0].pricing is not None and events[1].pricing is not None
        assert events[2].pricing is None
        assert all(e.biz_opaque_callback_data == "ticket/42" for e in events)


async def test_no_callback_data_means_none_echoed() -> None:
    async with emulator_harness() as h:
        await h.inbound()
        await h.send()
        await h.advance(5)
        assert [e.biz_opaque_callback_data for e in h.receiver.statuses()] == [None] * 3
        assert all("biz_opaque_callback_data" not in e.raw for e in h.receiver.statuses())


async def test_statuses_follow_the_configured_delays_on_the_emulator_clock() -> None:
    delays = StatusDelays(sent=1.0, delivered=3.0, read=None)
    async with emulator_harness(status_delays=delays) as h:
        await h.inbound()
        await h.send()
        await h.advance(0.5)
        assert h.receiver.statuses() == []
        await h.advance(1.0)
        assert [e.status.value for e in h.receiver.statuses()] == ["sent"]
        await h.advance(10.0)
        assert [e.status.value for e in h.receiver.statuses()] == ["sent", "delivered"]


async def test_bytes_are_serialised_like_meta() -> None:
    async with emulator_harness() as h:
        await h.inbound(profile_name="Zoë", message={"type": "text", "text": "ça/va? @you"})
        raw = h.receiver.accepted[0].body
        assert b"\\u00e7a\\/va? @you" in raw
        assert b"Zo\\u00eb" in raw
        assert b" " not in raw.split(b'"body":')[0]  # compact separators
        assert h.receiver.messages()[0].text == "ça/va? @you"
        # Re-serialising the parsed JSON gives different bytes: the classic signature bug.
        reserialised = json.dumps(json.loads(raw)).encode()
        header = h.receiver.accepted[0].headers[SIGNATURE_HEADER.lower()]
        assert not verify_signature(APP_SECRET, reserialised, header)


def test_encode_webhook_body_round_trips() -> None:
    payload = {"a": "x/y", "b": "äöå", "c": "\\/"}
    raw = encode_webhook_body(payload)
    assert raw == b'{"a":"x\\/y","b":"\\u00e4\\u00f6\\u00e5","c":"\\\\\\/"}'
    assert json.loads(raw) == payload


async def test_duplicates_deliver_each_status_twice() -> None:
    async with emulator_harness(duplicate_probability=1.0) as h:
        await h.inbound()
        await h.send()
        await h.advance(5)
        statuses = [e.status.value for e in h.receiver.statuses()]
        assert statuses == ["sent", "sent", "delivered", "delivered", "read", "read"]
        bodies = [d.body for d in h.receiver.accepted[1:]]
        assert bodies[0] == bodies[1]


async def test_out_of_order_reverses_arrival_but_keeps_timestamps() -> None:
    async with emulator_harness(out_of_order_probability=1.0) as h:
        await h.inbound()
        await h.send()
        start = int(h.clock.now())
        await h.advance(5)
        events = h.receiver.statuses()
        assert [e.status.value for e in events] == ["read", "delivered", "sent"]
        stamps = {e.status.value: int(e.raw["timestamp"]) for e in events}
        assert stamps == {"sent": start, "delivered": start + 1, "read": start + 2}


async def test_failed_deliveries_are_retried_with_backoff_until_200() -> None:
    receiver = Receiver(script=[500, 503, 204])  # only a 200 counts, as at Meta
    async with emulator_harness(
        receiver, status_delays=StatusDelays(sent=0, delivered=None, read=None)
    ) as h:
        await h.control("POST", "windows", json={"user": USER, "open": True})
        await h.send()
        await h.advance(0)
        for _ in range(4):
            await h.advance(4)

        attempts = await h.control("GET", "webhooks", params={"kind": "status"})
        assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
        assert [a["status_code"] for a in attempts] == [500, 503, 204, 200]
        assert [a["delivered"] for a in attempts] == [False, False, False, True]
        assert len({a["job_id"] for a in attempts}) == 1
        assert [e.status.value for e in h.receiver.statuses()] == ["sent"]


async def test_backoff_schedule_is_exponential_and_bounded() -> None:
    receiver = Receiver(always=500)
    delays = StatusDelays(sent=0, delivered=None, read=None)
    async with emulator_harness(
        receiver, status_delays=delays, delivery_max_attempts=6, delivery_backoff_max_s=4
    ) as h:
        await h.control("POST", "windows", json={"user": USER, "open": True})
        await h.send()
        start = h.clock.now()
        await h.advance(0)
        for _ in range(40):  # step through time one second at a time
            await h.advance(1)

        attempts = await h.control("GET", "webhooks")
        due_after = [round(a["time"] - start) for a in attempts]
        assert due_after == [0, 1, 3, 7, 11, 15]  # gaps 1, 2, 4, then capped at 4
        assert [a["gave_up"] for a in attempts] == [False] * 5 + [True]
        assert h.emulator.delivery.pending == 0


async def test_inbound_delivery_failure_is_reported_then_retried_in_background() -> None:
    receiver = Receiver(script=[500])
    async with emulator_harness(receiver) as h:
        response = await h.inbound()
        assert response.status_code == 502
        delivery = response.json()["delivery"]
        assert delivery == {
            "status_code": 500,
            "attempts": 1,
            "delivered": False,
            "retrying": True,
            "error": None,
        }
        assert h.receiver.messages() == []
        await h.advance(1)
        assert [m.message_id for m in h.receiver.messages()] == [response.json()["wamid"]]
        # The window opened when the user wrote, even though the webhook failed at first.
        assert (await h.send()).status_code == 200


async def test_inbound_can_wait_for_retries() -> None:
    receiver = Receiver(script=[500, 500])
    async with emulator_harness(receiver, delivery_backoff_base_s=0.0) as h:
        response = await h.inbound(wait=True)
        assert response.status_code == 200
        assert response.json()["delivery"]["attempts"] == 3
        assert response.json()["delivery"]["delivered"] is True


async def test_inbound_gives_up_after_the_bound() -> None:
    receiver = Receiver(always=503)
    async with emulator_harness(receiver, delivery_max_attempts=1) as h:
        response = await h.inbound()
        assert response.status_code == 502
        assert response.json()["delivery"]["retrying"] is False
        await h.advance(100)
        assert len(receiver.deliveries) == 1


async def test_unreachable_webhook_is_a_failed_attempt() -> None:
    # No injected client: the emulator opens (and closes) its own, to a port nobody listens on.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = EmulatorConfig(webhook_url=f"http://127.0.0.1:{port}/webhook")
    app = create_emulator_app(config, clock=FakeClock())
    transport = httpx.ASGITransport(app)
    async with app.state.emulator, httpx.AsyncClient(transport=transport, base_url="http://e") as c:
        response = await c.post(
            "/emulator/inbound", json={"from": USER, "message": {"type": "text", "text": "x"}}
        )
        assert response.status_code == 502
        delivery = response.json()["delivery"]
        assert delivery["status_code"] is None
        assert "ConnectError" in delivery["error"]
        assert delivery["retrying"] is True


async def test_no_webhook_url_is_409_until_one_is_set() -> None:
    async with emulator_harness(webhook_url=None) as h:
        response = await h.inbound()
        assert response.status_code == 409
        assert "webhook" in response.json()["error"]["message"]
        await h.control("PUT", "webhook-url", json={"url": "http://receiver/webhook"})
        assert (await h.inbound()).status_code == 200
        config = await h.control("GET", "config")
        assert config["webhook_url"] == "http://receiver/webhook"
        assert "app_secret" not in config and "access_token" not in config


async def test_bad_signature_is_refused_by_the_receiver_and_retried() -> None:
    receiver = Receiver(secret="another-secret")
    async with emulator_harness(receiver) as h:
        response = await h.inbound()
        assert response.json()["delivery"]["status_code"] == 403
