"""`POST /emulator/inbound`: every message type becomes a webhook that `parse_webhook` reads back
as the right event; plus batching, duplicates, bad bodies, reset and the clock."""

from __future__ import annotations

from typing import Any

import pytest
from emulator_harness import AUTH, GRAPH, USER, USER_DIGITS, Harness, emulator_harness

from whatsray.whatsapp.message_content import (
    AudioContent,
    ButtonContent,
    ContactsContent,
    DocumentContent,
    InteractiveContent,
    InteractiveType,
    LocationContent,
    MessageType,
    ReactionContent,
    StickerContent,
    TextContent,
)


async def media_id(h: Harness, mime: str = "application/pdf") -> str:
    created = await h.control("POST", "media", json={"mime_type": mime, "text": "file body"})
    return str(created["id"])


async def test_text_message_event() -> None:
    async with emulator_harness() as h:
        response = await h.inbound(profile_name="Ann", message={"type": "text", "text": "hello"})
        assert response.status_code == 200
        answer = response.json()
        assert answer["delivery"] == {
            "status_code": 200,
            "attempts": 1,
            "delivered": True,
            "retrying": False,
            "error": None,
        }
        [event] = h.receiver.messages()
        assert event.message_id == answer["wamid"]
        assert event.type is MessageType.TEXT
        assert event.content == TextContent(body="hello")
        assert event.from_phone == USER_DIGITS
        assert event.profile_name == "Ann"
        assert event.phone_number_id == h.config.phone_numbers[0].id
        assert event.waba_id == h.config.phone_numbers[0].waba_id
        assert event.timestamp is not None
        assert int(event.timestamp.timestamp()) == int(h.clock.now())


async def test_document_audio_sticker_and_location() -> None:
    async with emulator_harness() as h:
        pdf = await media_id(h)
        ogg = await media_id(h, "audio/ogg")
        webp = await media_id(h, "image/webp")
        messages: list[dict[str, Any]] = [
            {"type": "document", "media_id": pdf, "filename": "cv.pdf", "caption": "my cv"},
            {"type": "audio", "media_id": ogg, "voice": True},
            {"type": "sticker", "sticker": {"id": webp}},
            {"type": "location", "latitude": 48.85, "longitude": 2.35, "name": "Paris"},
        ]
        for message in messages:
            assert (await h.inbound(message=message)).status_code == 200

        document, audio, sticker, location = (e.content for e in h.receiver.messages())
        assert isinstance(document, DocumentContent)
        assert (document.media_id, document.filename, document.caption) == (pdf, "cv.pdf", "my cv")
        assert document.mime_type == "application/pdf"
        assert isinstance(audio, AudioContent) and audio.voice is True
        assert isinstance(sticker, StickerContent) and sticker.media_id == webp
        assert isinstance(location, LocationContent)
        assert (location.latitude, location.longitude, location.name) == (48.85, 2.35, "Paris")


async def test_reaction_and_quoted_reply() -> None:
    async with emulator_harness() as h:
        await h.inbound()
        sent = (await h.send()).json()["messages"][0]["id"]
        await h.inbound(message={"type": "reaction", "message_id": sent, "emoji": "👍"})
        await h.inbound(message={"type": "reaction", "message_id": sent, "emoji": ""})
        await h.inbound(message={"type": "text", "text": "re", "context": {"message_id": sent}})

        _, thumbs, removed, reply = h.receiver.messages()
        assert isinstance(thumbs.content, ReactionContent)
        assert (thumbs.content.message_id, thumbs.content.emoji) == (sent, "👍")
        assert isinstance(removed.content, ReactionContent) and removed.content.removed
        assert reply.context is not None
        assert reply.context.quoted_message_id == sent
        assert reply.context.quoted_from == h.config.phone_numbers[0].display_phone_number


async def test_button_and_list_replies_quote_the_interactive_message() -> None:
    async with emulator_harness() as h:
        await h.inbound()
        buttons = await h.client.post(
            f"{GRAPH}/messages",
            json={
                "messaging_product": "whatsapp",
                "to": USER,
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "body": {"text": "Pick one"},
                    "action": {
                        "buttons": [
                            {"type": "reply", "reply": {"id": "yes", "title": "Yes"}},
                            {"type": "reply", "reply": {"id": "no", "title": "No"}},
                        ]
                    },
                },
            },
            headers=AUTH,
        )
        assert buttons.status_code == 200, buttons.text
        buttons_wamid = buttons.json()["messages"][0]["id"]

        await h.inbound(message={"type": "button_reply", "id": "yes", "title": "Yes"})
        await h.inbound(
            message={"type": "list_reply", "id": "r1", "title": "Row", "description": "first"}
        )
        await h.inbound(message={"type": "button", "payload": "STOP", "text": "Stop promos"})

        _, button, row, template_button = h.receiver.messages()
        assert isinstance(button.content, InteractiveContent)
        assert button.content.interactive_type is InteractiveType.BUTTON_REPLY
        assert (button.content.reply_id, button.content.title) == ("yes", "Yes")
        assert button.context is not None and button.context.quoted_message_id == buttons_wamid
        assert isinstance(row.content, InteractiveContent)
        assert row.content.interactive_type is InteractiveType.LIST_REPLY
        assert (row.content.reply_id, row.content.description) == ("r1", "first")
        assert isinstance(template_button.content, ButtonContent)
        assert template_button.content.payload == "STOP"


async def test_any_type_in_metas_own_form() -> None:
    async with emulator_harness() as h:
        card = {"name": {"formatted_name": "Bob"}, "phones": [{"phone": "+1555", "type": "CELL"}]}
        await h.inbound(message={"type": "contacts", "contacts": [card]})
        [event] = h.receiver.messages()
        assert isinstance(event.content, ContactsContent)
        assert event.content.contacts[0].formatted_name == "Bob"


async def test_username_user_has_no_phone_number() -> None:
    bsuid = "US.13491208655302741918"
    async with emulator_harness() as h:
        response = await h.inbound(**{"from": None, "user_id": bsuid})
        assert response.status_code == 200
        message = response.json()["payload"]["entry"][0]["changes"][0]["value"]["messages"][0]
        assert "from" not in message
        [event] = h.receiver.messages()
        assert event.from_phone is None
        assert event.from_user_id == bsuid
        windows = await h.control("GET", "windows")
        assert [w["user"] for w in windows] == [bsuid]


async def test_batch_and_duplicates() -> None:
    async with emulator_harness() as h:
        batch = await h.inbound(
            messages=[{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
            duplicates=2,
        )
        assert batch.status_code == 200
        assert batch.json()["copies"] == 3
        assert len(h.receiver.accepted) == 3
        assert len({d.body for d in h.receiver.accepted}) == 1
        texts = [m.text for m in h.receiver.messages()]
        assert texts == ["one", "two"] * 3
        assert len(set(batch.json()["wamids"])) == 2


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"message": {"type": "text", "text": "x"}}, 400, "from"),
        ({"from": USER}, 400, "message"),
        ({"from": "bob", "message": {"type": "text", "text": "x"}}, 400, "phone"),
        ({"from": USER, "message": {"type": "text", "text": ""}}, 400, "text"),
        ({"from": USER, "message": {"type": "image", "media_id": "404"}}, 400, "unknown media"),
        ({"from": USER, "message": {"type": "poll"}}, 400, "poll"),
        ({"from": USER, "message": {"type": "text", "text": "x"}, "oops": 1}, 400, "oops"),
        (
            {"from": USER, "phone_number_id": "1", "message": {"type": "text", "text": "x"}},
            400,
            "phone_number_id",
        ),
    ],
)
async def test_bad_inbound_bodies_are_clear_400s(
    body: dict[str, Any], status: int, fragment: str
) -> None:
    async with emulator_harness() as h:
        response = await h.client.post("/emulator/inbound", json=body)
        assert response.status_code == status
        assert fragment in response.text
        assert h.receiver.deliveries == []
        assert await h.control("GET", "windows") == []


async def test_invalid_json_is_400() -> None:
    async with emulator_harness() as h:
        response = await h.client.post("/emulator/inbound", content=b"{")
        assert response.status_code == 400


async def test_reset_forgets_everything() -> None:
    async with emulator_harness() as h:
        await h.inbound()
        await h.send()
        await h.control("POST", "faults", json={"latency_s": 1.0})
        await h.advance(5)
        assert await h.control("GET", "webhooks")

        await h.control("POST", "reset")
        for path in ("outbound", "requests", "webhooks", "windows"):
            assert await h.control("GET", path) == [], path
        assert (await h.control("GET", "faults"))["latency_s"] == 0
        assert (await h.send()).json()["error"]["code"] == 131047  # the window is gone


async def test_reset_drops_pending_status_webhooks() -> None:
    async with emulator_harness() as h:
        await h.inbound()
        await h.send()
        await h.control("POST", "reset")
        await h.advance(10)
        assert h.receiver.statuses() == []


async def test_clock_endpoints() -> None:
    async with emulator_harness() as h:
        before = (await h.control("GET", "clock"))["now"]
        after = (await h.control("POST", "clock/advance", json={"seconds": 90}))["now"]
        assert after - before == 90
        bad = await h.client.post("/emulator/clock/advance", json={"seconds": -1})
        assert bad.status_code == 400


async def test_since_filters_and_health_and_console() -> None:
    async with emulator_harness(window_enforcement=False) as h:
        first = (await h.send()).json()["messages"][0]["id"]
        seq = (await h.control("GET", "outbound"))[0]["seq"]
        second = (await h.send()).json()["messages"][0]["id"]
        newer = await h.control("GET", "outbound", params={"since": seq})
        assert [r["wamid"] for r in newer] == [second]
        assert first != second
        assert (await h.control("GET", "health"))["ok"] is True
        console = await h.client.get("/emulator/console")
        assert console.status_code == 200
        assert "/emulator/inbound" in console.text
