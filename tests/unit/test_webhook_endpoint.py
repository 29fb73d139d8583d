"""The webhook layer: 401 without a signature, 403 with a wrong one, 413 over 3 MB, 400 for bad
JSON, and the handshake answering the challenge as plain text."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.metrics import MetricsProbe
from whatsray.whatsapp.events import Event
from whatsray.whatsapp.signature import SIGNATURE_HEADER, sign
from whatsray.whatsapp.webhook import (
    MAX_WEBHOOK_BODY_BYTES,
    WebhookRejected,
    accept_webhook,
)
from whatsray.whatsapp.webhook_receiver import EventSink, create_webhook_receiver

SECRET = "test-app-secret"
TOKEN = "test-verify-token"
BODY = json.dumps(
    {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "106540352242922",
                            },
                            "contacts": [{"profile": {"name": "Ana"}, "wa_id": "16505551234"}],
                            "messages": [
                                {
                                    "from": "16505551234",
                                    "id": "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdCNjg",
                                    "timestamp": "1749416383",
                                    "type": "text",
                                    "text": {"body": "hi"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
).encode()


def test_accepts_a_signed_body() -> None:
    events = accept_webhook(SECRET, BODY, sign(SECRET, BODY))
    assert [e.kind for e in events] == ["message"]


@pytest.mark.parametrize(
    ("header", "status"),
    [(None, 401), ("", 401), ("sha256=" + "0" * 64, 403), (sign("other", BODY), 403)],
)
def test_rejects_missing_or_wrong_signature(header: str | None, status: int) -> None:
    with pytest.raises(WebhookRejected) as info:
        accept_webhook(SECRET, BODY, header)
    assert info.value.status == status


def test_rejects_signed_garbage_with_400() -> None:
    body = b"{not json"
    with pytest.raises(WebhookRejected) as info:
        accept_webhook(SECRET, body, sign(SECRET, body))
    assert info.value.status == 400


def test_rejects_oversized_body_before_checking_anything() -> None:
    body = b" " * (MAX_WEBHOOK_BODY_BYTES + 1)
    with pytest.raises(WebhookRejected) as info:
        accept_webhook(SECRET, body, sign(SECRET, body))
    assert info.value.status == 413


@pytest.fixture
def received() -> list[Event]:
    return []


@pytest.fixture
def client(received: list[Event]) -> httpx.AsyncClient:
    app = create_webhook_receiver(app_secret=SECRET, verify_token=TOKEN, on_events=received.extend)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver")


async def test_handshake_returns_challenge_as_plain_text(client: httpx.AsyncClient) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": TOKEN, "hub.challenge": "1158201444"}
    response = await client.get("/webhook", params=params)
    assert response.status_code == 200
    assert response.text == "1158201444"  # not '"1158201444"'
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": TOKEN, "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ],
)
async def test_handshake_refuses_with_403(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    assert (await client.get("/webhook", params=params)).status_code == 403


async def test_post_statuses_and_nothing_delivered_on_rejection(
    client: httpx.AsyncClient, received: list[Event]
) -> None:
    assert (await client.post("/webhook", content=BODY)).status_code == 401
    bad = {SIGNATURE_HEADER: sign("wrong-secret", BODY)}
    assert (await client.post("/webhook", content=BODY, headers=bad)).status_code == 403
    huge = b"x" * (MAX_WEBHOOK_BODY_BYTES + 10)
    assert (await client.post("/webhook", content=huge)).status_code == 413
    assert received == []
    good = {SIGNATURE_HEADER: sign(SECRET, BODY)}
    response = await client.post("/webhook", content=BODY, headers=good)
    assert response.status_code == 200
    assert [e.idempotency_key for e in received] == ["wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdCNjg"]


async def test_oversized_streamed_body_without_content_length_is_refused(
    client: httpx.AsyncClient,
) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(4):
            yield b"x" * (1024 * 1024)

    response = await client.post("/webhook", content=chunks())
    assert response.status_code == 413


async def test_every_post_is_counted_by_result_and_timed(recorded: MetricsProbe) -> None:
    seen: set[str] = set()

    def dedupe(events: list[Event]) -> str | None:
        keys = {e.idempotency_key for e in events}
        duplicate = keys <= seen
        seen.update(keys)
        return "duplicate" if duplicate else None

    def unavailable(events: list[Event]) -> None:
        raise WebhookRejected(503, "inbox unavailable, retry later")

    good = {SIGNATURE_HEADER: sign(SECRET, BODY)}
    garbage = b"{not json"
    async with _receiver(dedupe) as client:
        assert (await client.post("/webhook", content=BODY, headers=good)).status_code == 200
        assert (await client.post("/webhook", content=BODY, headers=good)).status_code == 200
        assert (await client.post("/webhook", content=BODY)).status_code == 401
        bad = {SIGNATURE_HEADER: sign("wrong-secret", BODY)}
        assert (await client.post("/webhook", content=BODY, headers=bad)).status_code == 403
        signed_garbage = {SIGNATURE_HEADER: sign(SECRET, garbage)}
        response = await client.post("/webhook", content=garbage, headers=signed_garbage)
        assert response.status_code == 400
        huge = b"x" * (MAX_WEBHOOK_BODY_BYTES + 10)
        assert (await client.post("/webhook", content=huge)).status_code == 413
    async with _receiver(unavailable) as client:
        assert (await client.post("/webhook", content=BODY, headers=good)).status_code == 503

    counts = {
        result: recorded.value("whatsray_webhook_requests_total", result=result)
        for result in ("accepted", "duplicate", "bad_signature", "malformed", "too_large")
    }
    assert counts == {
        "accepted": 1,
        "duplicate": 1,
        "bad_signature": 2,
        "malformed": 1,
        "too_large": 1,
    }
    assert recorded.value("whatsray_webhook_requests_total", result="unavailable") == 1
    assert recorded.value("whatsray_webhook_seconds_count") == 7


@contextlib.asynccontextmanager
async def _receiver(on_events: EventSink) -> AsyncIterator[httpx.AsyncClient]:
    app = create_webhook_receiver(app_secret=SECRET, verify_token=TOKEN, on_events=on_events)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://receiver") as client:
        yield client


async def test_the_standalone_receiver_serves_its_metrics(recorded: MetricsProbe) -> None:
    good = {SIGNATURE_HEADER: sign(SECRET, BODY)}
    async with _receiver(lambda events: None) as client:
        assert (await client.post("/webhook", content=BODY, headers=good)).status_code == 200
        page = await client.get("/metrics")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain")
    assert 'whatsray_webhook_requests_total{result="accepted"} 1.0' in page.text
