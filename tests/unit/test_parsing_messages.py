"""Every recorded inbound-message fixture parses to the right typed event, with its real values."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from whatsray.whatsapp.errors import MetaApiError
from whatsray.whatsapp.events import ChatKey, MessageEvent, MessageType
from whatsray.whatsapp.message_content import (
    AudioContent,
    ButtonContent,
    ContactsContent,
    DocumentContent,
    EditContent,
    ImageContent,
    InteractiveContent,
    InteractiveType,
    LocationContent,
    MediaContent,
    OrderContent,
    ReactionContent,
    RevokeContent,
    StickerContent,
    SystemContent,
    TextContent,
    UnsupportedContent,
    VideoContent,
)
from whatsray.whatsapp.parsing import parse_webhook

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
PNID = "106540352242922"
PHONE = "16505551234"
BSUID = "US.13491208655302741918"
OUR_WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI0QTJCNzZCNUY4RDdGNTFBMTgA"
WAMID = "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQz"  # shared prefix of the fixtures' inbound wamids


def message(name: str) -> MessageEvent:
    events = parse_webhook((FIXTURES / name).read_bytes())
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, MessageEvent)
    return event


def test_text_message_carries_everything() -> None:
    event = message("message_text.json")
    assert event.kind == "message"
    assert event.type is MessageType.TEXT
    assert event.content == TextContent(body="Does it come in another color?")
    assert event.text == "Does it come in another color?"
    wamid = "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQTdGRjY4QjA3RTlFQTM3MzA5OQA="
    assert event.message_id == wamid
    assert event.idempotency_key == wamid
    assert event.from_phone == PHONE
    assert event.from_user_id == BSUID
    assert event.parent_user_id == "US.ENT.11815799212886844830"
    assert event.profile_name == "Sheena Nelson"
    # Both phone and BSUID are known: the chat is keyed on the BSUID.
    assert event.chat == ChatKey(phone_number_id=PNID, user=BSUID)
    assert str(event.chat) == f"{PNID}:{BSUID}"
    assert event.waba_id == "102290129340398"
    assert event.phone_number_id == PNID
    assert event.display_phone_number == "15550783881"
    assert event.timestamp == datetime(2025, 6, 8, 20, 59, 43, tzinfo=UTC)
    assert event.context is None and event.referral is None and event.errors == ()
    assert event.raw["text"] == {"body": "Does it come in another color?"}
    assert event.raw["id"] == wamid


def test_reply_has_the_quoted_message() -> None:
    event = message("message_text_reply.json")
    assert event.text == "Yes, the blue one please"
    assert event.context is not None
    assert event.context.is_reply
    assert event.context.quoted_message_id == (
        "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA"
    )
    assert event.context.quoted_from == "15550783881"
    assert not event.context.forwarded
    assert event.chat == ChatKey(phone_number_id=PNID, user=PHONE)


def test_forwarded() -> None:
    context = message("message_forwarded.json").context
    assert context is not None
    assert context.forwarded and not context.frequently_forwarded and not context.is_reply


def test_frequently_forwarded_image() -> None:
    event = message("message_frequently_forwarded.json")
    assert event.context is not None
    assert event.context.forwarded and event.context.frequently_forwarded
    assert isinstance(event.content, ImageContent)
    assert event.text == "Is this offer real?"


def test_referral_from_a_click_to_whatsapp_ad() -> None:
    event = message("message_referral.json")
    referral = event.referral
    assert referral is not None
    assert referral.source_type == "ad"
    assert referral.source_id == "120226305854810726"
    assert referral.source_url == "https://fb.me/3cr4Wqqkv"
    assert referral.headline == "Summer sale: 30% off"
    assert referral.media_type == "image"
    assert referral.image_url == "https://scontent.xx.fbcdn.net/v/t45.1600-4/418.png"
    assert referral.video_url is None
    assert referral.ctwa_clid is not None and referral.ctwa_clid.startswith("ARAkLkA8")
    assert event.text == "Hi! I saw your ad, can I get the discount?"


def test_image() -> None:
    event = message("message_image.json")
    content = event.content
    assert event.type is MessageType.IMAGE
    assert isinstance(content, ImageContent) and isinstance(content, MediaContent)
    assert content.media_id == "1104480873777230"
    assert content.mime_type == "image/jpeg"
    assert content.sha256 == "7/CVh2HVwjHGF3lEZxYL4b7fKjLhQ0RgD0M0F0lL2sA="
    assert content.url is not None and content.url.startswith(
        "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1104480873777230"
    )
    assert content.caption == "This is the one I ordered"
    assert event.text == "This is the one I ordered"


def test_video() -> None:
    content = message("message_video.json").content
    assert isinstance(content, VideoContent)
    assert (content.media_id, content.mime_type) == ("1186462842788313", "video/mp4")
    assert content.caption == "It makes this noise"
    assert content.url is None


def test_audio_file_is_not_a_voice_note() -> None:
    event = message("message_audio.json")
    assert isinstance(event.content, AudioContent)
    assert event.content.voice is False
    assert event.content.mime_type == "audio/mpeg"
    assert event.text is None


def test_voice_note() -> None:
    content = message("message_voice.json").content
    assert isinstance(content, AudioContent)
    assert content.voice is True
    assert content.mime_type == "audio/ogg; codecs=opus"
    assert content.media_id == "2306524216386131"


def test_document() -> None:
    content = message("message_document.json").content
    assert isinstance(content, DocumentContent)
    assert content.filename == "invoice-2026-03.pdf"
    assert content.caption == "Invoice for March"
    assert content.mime_type == "application/pdf"


def test_sticker() -> None:
    content = message("message_sticker.json").content
    assert isinstance(content, StickerContent)
    assert content.animated is True
    assert content.mime_type == "image/webp"


def test_location() -> None:
    content = message("message_location.json").content
    assert content == LocationContent(
        latitude=37.483307,
        longitude=-122.148981,
        name="Meta Headquarters",
        address="1 Hacker Way, Menlo Park, CA 94025",
        url="https://www.facebook.com/about",
    )


def test_contacts() -> None:
    content = message("message_contacts.json").content
    assert isinstance(content, ContactsContent)
    pablo, ana = content.contacts
    assert pablo.formatted_name == "Pablo Morales"
    assert (pablo.first_name, pablo.last_name) == ("Pablo", "Morales")
    assert [(p.phone, p.wa_id, p.type) for p in pablo.phones] == [
        ("+1 (650) 555-1235", "16505551235", "CELL"),
        ("+1 (650) 555-1299", None, "WORK"),
    ]
    assert [e.email for e in pablo.emails] == ["pablo.morales@example.com"]
    assert [u.url for u in pablo.urls] == ["https://www.luckyshrub.com"]
    assert pablo.org is not None and pablo.org.company == "Lucky Shrub"
    assert pablo.addresses[0].city == "Menlo Park" and pablo.addresses[0].zip == "94025"
    assert pablo.birthday == "1990-07-23"
    assert ana.formatted_name == "Ana Silva"
    assert ana.phones[0].wa_id == "5511912345678"
    assert ana.org is None and ana.emails == ()


def test_interactive_button_reply() -> None:
    event = message("message_interactive_button_reply.json")
    content = event.content
    assert isinstance(content, InteractiveContent)
    assert content.interactive_type is InteractiveType.BUTTON_REPLY
    assert content.reply_id == "confirm-order-4711"
    assert content.title == "Confirm"
    assert event.text == "Confirm"
    # The reply points at the business message that carried the buttons.
    assert event.context is not None and event.context.quoted_message_id == OUR_WAMID


def test_interactive_list_reply() -> None:
    event = message("message_interactive_list_reply.json")
    content = event.content
    assert isinstance(content, InteractiveContent)
    assert content.interactive_type is InteractiveType.LIST_REPLY
    assert content.reply_id == "slot-2026-03-14-0930"
    assert content.title == "Sat 14 Mar, 9:30"
    assert content.description == "Downtown store, with Maria"
    assert event.text == "Sat 14 Mar, 9:30"


def test_interactive_flow_reply_decodes_response_json() -> None:
    event = message("message_interactive_nfm_reply.json")
    content = event.content
    assert isinstance(content, InteractiveContent)
    assert content.interactive_type is InteractiveType.NFM_REPLY
    assert content.response_json == {
        "flow_token": "AQAAAAACS5FpgQ_cAAAAAD0QI3s.",
        "delivery_date": "2026-03-20",
        "size": "M",
        "gift_wrap": True,
    }
    assert content.response_json_raw is not None and content.response_json_raw.startswith('{"flow')
    assert (content.flow_name, content.flow_body) == ("flow", "Sent")
    assert event.text is None


def test_template_quick_reply_button() -> None:
    event = message("message_button.json")
    assert event.content == ButtonContent(payload="STOP_PROMOTIONS", text="Stop promotions")
    assert event.text == "Stop promotions"
    assert event.context is not None and event.context.quoted_message_id == OUR_WAMID


def test_reaction() -> None:
    content = message("message_reaction.json").content
    assert isinstance(content, ReactionContent)
    assert content.message_id == "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBJBQzA3NDQ1NjJBMEY5QzY0RjUA"
    assert content.emoji == "\U0001f44d"
    assert not content.removed


def test_reaction_removed_with_empty_emoji() -> None:
    content = message("message_reaction_removed.json").content
    assert isinstance(content, ReactionContent)
    assert content.emoji is None
    assert content.removed
    assert content.message_id == "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBJBQzA3NDQ1NjJBMEY5QzY0RjUA"


def test_order() -> None:
    event = message("message_order.json")
    content = event.content
    assert isinstance(content, OrderContent)
    assert content.catalog_id == "1537012273694734"
    assert event.text == "Please deliver after 6pm"
    assert [
        (i.product_retailer_id, i.quantity, i.item_price, i.currency) for i in content.product_items
    ] == [("shrub-fern-01", 2, 12.5, "USD"), ("pot-terracotta-m", 1, 8.0, "USD")]


def test_system_number_change() -> None:
    event = message("message_system.json")
    assert event.content == SystemContent(
        body="Sheena Nelson changed from 16505551234 to 16505559876",
        system_type="user_changed_number",
        new_wa_id="16505559876",
    )
    assert event.text is None  # a notice from WhatsApp, not words the user wrote


def test_system_identity_change_keeps_identity_raw() -> None:
    event = message("message_system_identity.json")
    assert isinstance(event.content, SystemContent)
    assert event.content.system_type == "customer_identity_changed"
    assert event.raw["identity"]["hash"] == "Sjvjlx8G6Z0="


def test_unsupported_with_its_error() -> None:
    event = message("message_unsupported.json")
    assert event.type is MessageType.UNSUPPORTED
    assert event.content == UnsupportedContent(unsupported_type="video_note")
    (error,) = event.errors
    assert error.code == 131051
    assert error.title == "Message type unknown"
    assert error.details == "Message type is currently not supported."
    exc = error.to_exception()
    assert isinstance(exc, MetaApiError) and exc.code == 131051


def test_revoke() -> None:
    event = message("message_revoke.json")
    assert event.content == RevokeContent(
        original_message_id=f"{WAMID}QTdGRjY4QjA3RTlFQTM3MzA5OQA="
    )
    assert event.text is None


def test_edit_parses_the_new_content() -> None:
    event = message("message_edit.json")
    content = event.content
    assert isinstance(content, EditContent)
    assert content.original_message_id == f"{WAMID}QTdGRjY4QjA3RTlFQTM3MzA5OQA="
    assert content.message == TextContent(body="Does it come in another colour?")
    assert event.text == "Does it come in another colour?"


def test_user_with_a_bsuid_and_no_phone() -> None:
    event = message("message_bsuid_only.json")
    assert event.from_phone is None
    assert event.from_user_id == BSUID
    assert event.user == BSUID
    assert event.profile_name == "sheena.plants"
    assert event.parent_user_id == "US.ENT.11815799212886844830"
    assert event.chat == ChatKey(phone_number_id=PNID, user=BSUID)
    assert event.text == "hey, it's me"


def test_meta_escaped_unicode_and_slashes_are_decoded() -> None:
    event = message("unicode_escaped.json")
    assert event.text == (
        "Hallå! äöå \U0001f600\U0001f389 see https://example.com/shop?q=grün"
        " or mail jörg@example.com"
    )
    assert event.profile_name == "Jörg Åström"
    assert event.chat == ChatKey(phone_number_id=PNID, user="4915112345678")


MESSAGE_FIXTURES = {
    "message_text.json": MessageType.TEXT,
    "message_text_reply.json": MessageType.TEXT,
    "message_forwarded.json": MessageType.TEXT,
    "message_frequently_forwarded.json": MessageType.IMAGE,
    "message_referral.json": MessageType.TEXT,
    "message_image.json": MessageType.IMAGE,
    "message_video.json": MessageType.VIDEO,
    "message_audio.json": MessageType.AUDIO,
    "message_voice.json": MessageType.AUDIO,
    "message_document.json": MessageType.DOCUMENT,
    "message_sticker.json": MessageType.STICKER,
    "message_location.json": MessageType.LOCATION,
    "message_contacts.json": MessageType.CONTACTS,
    "message_interactive_button_reply.json": MessageType.INTERACTIVE,
    "message_interactive_list_reply.json": MessageType.INTERACTIVE,
    "message_interactive_nfm_reply.json": MessageType.INTERACTIVE,
    "message_button.json": MessageType.BUTTON,
    "message_reaction.json": MessageType.REACTION,
    "message_reaction_removed.json": MessageType.REACTION,
    "message_order.json": MessageType.ORDER,
    "message_system.json": MessageType.SYSTEM,
    "message_system_identity.json": MessageType.SYSTEM,
    "message_unsupported.json": MessageType.UNSUPPORTED,
    "message_revoke.json": MessageType.REVOKE,
    "message_edit.json": MessageType.EDIT,
    "message_bsuid_only.json": MessageType.TEXT,
    "unicode_escaped.json": MessageType.TEXT,
}


@pytest.mark.parametrize(("name", "expected"), sorted(MESSAGE_FIXTURES.items()))
def test_message_fixture_type_and_content_agree(name: str, expected: MessageType) -> None:
    event = message(name)
    assert event.type is expected
    assert event.raw_type == expected.value
    assert event.content.type is expected
    assert event.timestamp is not None
    offset = event.timestamp.utcoffset()
    assert offset is not None and offset.total_seconds() == 0
    assert event.idempotency_key == event.message_id
    assert event.idempotency_key.startswith("wamid.")


def test_every_fixture_is_covered_by_a_test() -> None:
    # Fixtures that are not single inbound messages are tested in test_parsing_updates.py.
    updates = {
        "status_sent.json",
        "status_delivered.json",
        "status_read.json",
        "status_played.json",
        "status_failed.json",
        "status_group.json",
        "status_bsuid_only.json",
        "message_value_errors.json",
        "batch.json",
        "template_status_update.json",
        "template_quality_update.json",
        "account_update.json",
        "phone_number_quality_update.json",
        "calls.json",
        "user_preferences.json",
        "smb_message_echoes.json",
        "history.json",
    }
    assert {p.name for p in FIXTURES.glob("*.json")} == set(MESSAGE_FIXTURES) | updates
