"""Statuses, value-level errors, other webhook fields and batched bodies, from recorded fixtures."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from whatsray.whatsapp.errors import ReEngagementError, ServerError
from whatsray.whatsapp.events import (
    ChatKey,
    ErrorEvent,
    Event,
    MessageEvent,
    OtherEvent,
    StatusEvent,
    StatusValue,
)
from whatsray.whatsapp.message_content import InteractiveContent, InteractiveType
from whatsray.whatsapp.parsing import parse_webhook

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
PNID = "106540352242922"
PHONE = "16505551234"
BSUID = "US.13491208655302741918"
SENT_WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI3RjJENTZDNEFBMzcxRkU0NTkA"


def events_of(name: str) -> list[Event]:
    return parse_webhook((FIXTURES / name).read_bytes())


def status(name: str) -> StatusEvent:
    (event,) = events_of(name)
    assert isinstance(event, StatusEvent)
    return event


def test_sent_with_pricing_conversation_and_callback_data() -> None:
    event = status("status_sent.json")
    assert event.kind == "status"
    assert event.status is StatusValue.SENT
    assert event.message_id == SENT_WAMID
    assert event.idempotency_key == f"{SENT_WAMID}:sent"
    assert event.chat == ChatKey(phone_number_id=PNID, user=PHONE)
    assert event.recipient_id == PHONE and event.recipient_user_id is None
    assert event.timestamp == datetime(2025, 6, 8, 21, 10, tzinfo=UTC)
    assert event.biz_opaque_callback_data == "order-4711/confirmation"
    assert event.pricing is not None
    assert event.pricing.billable is True
    assert event.pricing.pricing_model == "PMP"
    assert event.pricing.category == "service"
    assert event.pricing.type == "free_customer_service"
    assert event.conversation is not None
    assert event.conversation.id == "6ceb9d929c3b3ea0b2a1a3b6fa4e1d77"
    assert event.conversation.origin_type == "service"
    assert event.conversation.expiration_timestamp == datetime(2025, 6, 9, 21, 10, tzinfo=UTC)
    assert not event.is_group and event.errors == ()


def test_delivered_to_a_user_with_a_bsuid_keys_the_chat_on_it() -> None:
    event = status("status_delivered.json")
    assert event.status is StatusValue.DELIVERED
    assert event.idempotency_key == f"{SENT_WAMID}:delivered"
    assert event.recipient_id == PHONE  # the phone is kept...
    assert event.recipient_user_id == BSUID
    assert event.chat == ChatKey(phone_number_id=PNID, user=BSUID)  # ...the chat uses the BSUID


def test_read_and_played() -> None:
    read = status("status_read.json")
    played = status("status_played.json")
    assert read.status is StatusValue.READ and read.idempotency_key == f"{SENT_WAMID}:read"
    assert played.status is StatusValue.PLAYED
    assert played.idempotency_key.endswith(":played")
    assert played.pricing is None and played.conversation is None


def test_failed_carries_typed_errors() -> None:
    event = status("status_failed.json")
    assert event.status is StatusValue.FAILED
    (error,) = event.errors
    assert error.code == 131047
    assert error.title == "Re-engagement message"
    assert error.details is not None and error.details.startswith("Message failed to send")
    assert (
        error.href == "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
    )
    assert isinstance(error.to_exception(), ReEngagementError)


def test_group_status_is_keyed_on_the_group() -> None:
    event = status("status_group.json")
    assert event.is_group
    assert event.recipient_type == "group"
    assert event.recipient_id == "120363394825681240"
    assert event.recipient_participant_id == PHONE
    assert event.chat == ChatKey(phone_number_id=PNID, user="120363394825681240")


def test_status_for_a_user_with_only_a_bsuid() -> None:
    event = status("status_bsuid_only.json")
    assert event.recipient_id is None
    assert event.chat == ChatKey(phone_number_id=PNID, user=BSUID)


def test_value_level_errors_become_error_events_after_the_message() -> None:
    message, error = events_of("message_value_errors.json")
    assert isinstance(message, MessageEvent)
    assert isinstance(message.content, InteractiveContent)
    assert message.content.interactive_type is InteractiveType.UNKNOWN  # no body was sent
    assert isinstance(error, ErrorEvent)
    assert error.kind == "error"
    assert error.code == 131000
    assert error.error.title == "Something went wrong"
    assert error.error.details == "Unsupported webhook payload"
    assert error.field == "messages"
    assert error.chat == ChatKey(phone_number_id=PNID, user=PHONE)
    assert error.idempotency_key.startswith("error:")
    assert error.raw["code"] == 131000
    exc = error.error.to_exception()
    assert isinstance(exc, ServerError) and exc.is_transient


OTHER_FIXTURES = {
    "template_status_update.json": ("message_template_status_update", "APPROVED"),
    "template_quality_update.json": ("message_template_quality_update", None),
    "account_update.json": ("account_update", "VERIFIED_ACCOUNT"),
    "phone_number_quality_update.json": ("phone_number_quality_update", "FLAGGED"),
    "calls.json": ("calls", None),
    "user_preferences.json": ("user_preferences", None),
    "history.json": ("history", None),
}


@pytest.mark.parametrize(("name", "expected"), sorted(OTHER_FIXTURES.items()))
def test_other_fields_keep_their_raw_value(name: str, expected: tuple[str, str | None]) -> None:
    field, event_name = expected
    (event,) = events_of(name)
    assert isinstance(event, OtherEvent)
    assert event.kind == "other"
    assert event.field == field
    assert event.event_name == event_name
    assert event.waba_id == "102290129340398"
    original = json.loads((FIXTURES / name).read_bytes())["entry"][0]["changes"][0]["value"]
    assert event.value == original
    assert event.idempotency_key.startswith("other:")
    assert event.summary()["type"] == field


def test_business_app_echoes_are_one_event_each_in_the_recipients_chat() -> None:
    (event,) = events_of("smb_message_echoes.json")
    assert isinstance(event, OtherEvent)
    assert event.field == "smb_message_echoes"
    echo = event.value["message_echoes"][0]
    assert event.idempotency_key == f"echo:{echo['id']}"
    assert event.chat == ChatKey(phone_number_id=PNID, user="16505551234")
    assert echo["text"]["body"] == "Sent from the Business app"
    assert event.timestamp is not None and int(event.timestamp.timestamp()) == 1749417400
    # A batch of two echoes to two users: two events, each in its own chat.
    document = json.loads((FIXTURES / "smb_message_echoes.json").read_bytes())
    value = document["entry"][0]["changes"][0]["value"]
    second = {**value["message_echoes"][0], "id": "wamid.SECOND", "to": "16505550000"}
    value["message_echoes"].append(second)
    first, other = parse_webhook(json.dumps(document).encode())
    assert isinstance(first, OtherEvent) and isinstance(other, OtherEvent)
    assert [e.chat.user for e in (first, other) if e.chat] == ["16505551234", "16505550000"]
    assert other.value["message_echoes"] == [second]
    assert other.idempotency_key == "echo:wamid.SECOND"


def test_template_status_values() -> None:
    (event,) = events_of("template_status_update.json")
    assert isinstance(event, OtherEvent)
    assert event.value["message_template_name"] == "order_confirmation"
    assert event.value["reason"] == "NONE"
    assert event.chat is None and event.phone_number_id is None


def test_call_update_has_the_callers_chat() -> None:
    (event,) = events_of("calls.json")
    assert isinstance(event, OtherEvent)
    assert event.phone_number_id == PNID
    assert event.chat == ChatKey(phone_number_id=PNID, user=PHONE)
    assert event.value["calls"][0]["event"] == "connect"


def test_batch_returns_every_update_in_order() -> None:
    events = events_of("batch.json")
    assert [(e.kind, e.summary()["type"]) for e in events] == [
        ("message", "text"),
        ("message", "image"),
        ("message", "text"),
        ("status", "sent"),
        ("status", "delivered"),
        ("status", "read"),
        ("message", "text"),
        ("other", "message_template_status_update"),
    ]
    first, second, third = events[:3]
    assert isinstance(first, MessageEvent) and isinstance(second, MessageEvent)
    assert isinstance(third, MessageEvent)
    assert (first.text, third.text) == ("hi", "are you there?")
    # Each message is matched to its own contact, by phone.
    assert (first.profile_name, second.profile_name) == ("Sheena Nelson", "Pablo Morales")
    assert second.from_user_id == "US.80211425394657819266"  # found on the contact only
    assert second.chat == ChatKey(phone_number_id=PNID, user="US.80211425394657819266")
    assert first.chat == third.chat == ChatKey(phone_number_id=PNID, user=PHONE)
    # The second entry is another business account with its own number.
    last_message = events[6]
    assert last_message.waba_id == "104996122399160"
    assert last_message.chat == ChatKey(phone_number_id="109876543210987", user=PHONE)
    assert events[7].waba_id == "104996122399160"
    keys = [e.idempotency_key for e in events]
    assert len(set(keys)) == len(keys)
    assert keys[3:5] == [f"{SENT_WAMID}:sent", f"{SENT_WAMID}:delivered"]


def all_fixture_events() -> list[tuple[str, Event]]:
    return [
        (p.name, e) for p in sorted(FIXTURES.glob("*.json")) for e in parse_webhook(p.read_bytes())
    ]


def test_every_event_pickles_and_round_trips_through_json() -> None:
    adapter: TypeAdapter[Event] = TypeAdapter(Event)
    pairs = all_fixture_events()
    assert len(pairs) > 40
    for name, event in pairs:
        assert pickle.loads(pickle.dumps(event)) == event, name
        assert adapter.validate_json(adapter.dump_json(event)) == event, name


def test_events_are_immutable() -> None:
    event = status("status_sent.json")
    with pytest.raises(ValueError, match="frozen"):
        event.status = StatusValue.READ  # type: ignore[misc]


@pytest.mark.parametrize("name", ["message_text.json", "status_failed.json", "calls.json"])
def test_summary_has_the_cli_fields(name: str) -> None:
    (event,) = events_of(name)
    summary: dict[str, Any] = event.summary()
    assert summary["kind"] == event.kind
    assert summary["id"] == event.idempotency_key
    assert summary["chat"] == str(event.chat)
    json.dumps(summary)


def test_summaries_by_kind() -> None:
    (text,) = events_of("message_text.json")
    assert text.summary() == {
        "kind": "message",
        "id": "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdGRjY4QjA3RTlFQTM3MzA5OQA=",
        "chat": f"{PNID}:{BSUID}",
        "type": "text",
        "timestamp": "2025-06-08T20:59:43+00:00",
        "name": "Sheena Nelson",
        "text": "Does it come in another color?",
    }
    failed = status("status_failed.json").summary()
    assert (failed["type"], failed["error_codes"]) == ("failed", [131047])
    error = events_of("message_value_errors.json")[1].summary()
    assert (error["kind"], error["type"], error["chat"]) == ("error", 131000, f"{PNID}:{PHONE}")
    other = events_of("account_update.json")[0].summary()
    assert (other["type"], other["event"], other["chat"]) == (
        "account_update",
        "VERIFIED_ACCOUNT",
        None,
    )
