"""Outbound message models: Meta's limits at their boundaries, the exact Graph body, round trips.

The limits are written out as numbers here on purpose: they pin Meta's documented values, so a
changed constant in `limits.py` fails these tests instead of moving them along.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whatsray.whatsapp.errors import MessageValidationError
from whatsray.whatsapp.messages import (
    ListMessage,
    ListRow,
    ListSection,
    MarkAsRead,
    MediaMessage,
    OutboundMessage,
    ReactionMessage,
    ReplyButton,
    ReplyButtonsMessage,
    TemplateComponent,
    TemplateMessage,
    TemplateParameter,
    TextMessage,
    validate_send_body,
)

PHONE = "+16505551234"
BSUID = "US.13491208655302741918"


def buttons_msg(**overrides: Any) -> ReplyButtonsMessage:
    fields: dict[str, Any] = {
        "to": PHONE,
        "body": "Pick one",
        "buttons": (ReplyButton(id="yes", title="Yes"), ReplyButton(id="no", title="No")),
    }
    return ReplyButtonsMessage(**{**fields, **overrides})


def list_msg(**overrides: Any) -> ListMessage:
    fields: dict[str, Any] = {
        "to": PHONE,
        "body": "Menu",
        "button": "Open",
        "sections": (ListSection(rows=(ListRow(id="r1", title="Row 1"),)),),
    }
    return ListMessage(**{**fields, **overrides})


def one_row(**row: Any) -> tuple[ListSection, ...]:
    return (ListSection(rows=(ListRow(**{"id": "r1", "title": "Row", **row}),)),)


# (name, build a message with a string of n chars in the limited place, max n, path in details)
LENGTH_LIMITS: list[tuple[str, Callable[[str], Any], int, str]] = [
    ("text body", lambda s: TextMessage(to=PHONE, body=s), 4096, "text.body"),
    (
        "callback data",
        lambda s: TextMessage(to=PHONE, body="hi", callback_data=s),
        512,
        "biz_opaque_callback_data",
    ),
    (
        "image caption",
        lambda s: MediaMessage(to=PHONE, media_type="image", media_id="1", caption=s),
        1024,
        "image.caption",
    ),
    (
        "template name",
        lambda s: TemplateMessage(to=PHONE, name=s, language="en_US"),
        512,
        "template.name",
    ),
    (
        "button id",
        lambda s: buttons_msg(buttons=(ReplyButton(id=s, title="t"),)),
        256,
        "interactive.action.buttons[0].reply.id",
    ),
    (
        "button title",
        lambda s: buttons_msg(
            buttons=(ReplyButton(id="a", title="t"), ReplyButton(id="b", title=s))
        ),
        20,
        "interactive.action.buttons[1].reply.title",
    ),
    ("buttons body", lambda s: buttons_msg(body=s), 1024, "interactive.body.text"),
    ("buttons header", lambda s: buttons_msg(header=s), 60, "interactive.header.text"),
    ("buttons footer", lambda s: buttons_msg(footer=s), 60, "interactive.footer.text"),
    ("list button label", lambda s: list_msg(button=s), 20, "interactive.action.button"),
    ("list body", lambda s: list_msg(body=s), 4096, "interactive.body.text"),
    ("list header", lambda s: list_msg(header=s), 60, "interactive.header.text"),
    ("list footer", lambda s: list_msg(footer=s), 60, "interactive.footer.text"),
    (
        "row id",
        lambda s: list_msg(sections=one_row(id=s)),
        200,
        "interactive.action.sections[0].rows[0].id",
    ),
    (
        "row title",
        lambda s: list_msg(sections=one_row(title=s)),
        24,
        "interactive.action.sections[0].rows[0].title",
    ),
    (
        "row description",
        lambda s: list_msg(sections=one_row(description=s)),
        72,
        "interactive.action.sections[0].rows[0].description",
    ),
    (
        "section title",
        lambda s: list_msg(sections=(ListSection(title=s, rows=(ListRow(id="1", title="t"),)),)),
        24,
        "interactive.action.sections[0].title",
    ),
]


@pytest.mark.parametrize(
    ("build", "limit", "path"),
    [case[1:] for case in LENGTH_LIMITS],
    ids=[case[0] for case in LENGTH_LIMITS],
)
def test_length_limit_ok_at_max_error_one_past(
    build: Callable[[str], Any], limit: int, path: str
) -> None:
    at_max = build("x" * limit)
    assert validate_send_body(at_max.to_graph_body()) == at_max

    with pytest.raises(MessageValidationError) as caught:
        build("x" * (limit + 1))
    assert caught.value.code == 100
    assert caught.value.details == f"{path}: at most {limit} characters (got {limit + 1})"


@pytest.mark.parametrize(
    ("build", "path"),
    [
        (lambda: TextMessage(to=PHONE, body=""), "text.body"),
        (lambda: buttons_msg(body=""), "interactive.body.text"),
        (
            lambda: buttons_msg(buttons=(ReplyButton(id="a", title=""),)),
            "interactive.action.buttons[0].reply.title",
        ),
        (
            lambda: list_msg(sections=one_row(title="")),
            "interactive.action.sections[0].rows[0].title",
        ),
        (lambda: TemplateMessage(to=PHONE, name="", language="en"), "template.name"),
    ],
)
def test_empty_required_text_is_invalid(build: Callable[[], Any], path: str) -> None:
    with pytest.raises(MessageValidationError) as caught:
        build()
    assert caught.value.code == 100
    assert caught.value.details == f"{path}: must not be empty"


def make_buttons(n: int) -> tuple[ReplyButton, ...]:
    return tuple(ReplyButton(id=f"b{i}", title=f"B{i}") for i in range(n))


def test_reply_buttons_one_to_three() -> None:
    assert len(buttons_msg(buttons=make_buttons(1)).buttons) == 1
    assert (
        len(
            buttons_msg(buttons=make_buttons(3)).to_graph_body()["interactive"]["action"]["buttons"]
        )
        == 3
    )
    with pytest.raises(MessageValidationError) as too_many:
        buttons_msg(buttons=make_buttons(4))
    assert too_many.value.code == 100
    assert too_many.value.details == "interactive.action.buttons: at most 3 buttons (got 4)"
    with pytest.raises(MessageValidationError) as none:
        buttons_msg(buttons=())
    assert none.value.details == "interactive.action.buttons: at least 1 button"


def test_reply_button_ids_must_be_unique() -> None:
    with pytest.raises(MessageValidationError) as caught:
        buttons_msg(buttons=(ReplyButton(id="same", title="A"), ReplyButton(id="same", title="B")))
    assert caught.value.code == 131009
    assert "duplicate id 'same'" in (caught.value.details or "")


def sections(rows_per_section: list[int]) -> tuple[ListSection, ...]:
    counter = iter(range(1000))
    return tuple(
        ListSection(
            title=f"S{i}",
            rows=tuple(ListRow(id=f"r{next(counter)}", title="Row") for _ in range(n)),
        )
        for i, n in enumerate(rows_per_section)
    )


def test_list_sections_one_to_ten() -> None:
    assert len(list_msg(sections=sections([1] * 10)).sections) == 10
    with pytest.raises(MessageValidationError) as caught:
        list_msg(sections=sections([1] * 11))
    assert caught.value.code == 100
    assert caught.value.details == "interactive.action.sections: at most 10 sections (got 11)"
    with pytest.raises(MessageValidationError):
        list_msg(sections=())


def test_list_rows_counted_across_sections() -> None:
    assert sum(len(s.rows) for s in list_msg(sections=sections([4, 6])).sections) == 10
    with pytest.raises(MessageValidationError) as caught:
        list_msg(sections=sections([5, 6]))
    assert caught.value.code == 100
    assert caught.value.details == "interactive.action.sections: at most 10 rows (got 11)"
    with pytest.raises(MessageValidationError) as empty:
        list_msg(sections=(ListSection(rows=()),))
    assert empty.value.details == "interactive.action.sections: at least 1 row"


def test_section_title_required_only_with_several_sections() -> None:
    untitled = ListSection(rows=(ListRow(id="a", title="A"),))
    assert list_msg(sections=(untitled,)).sections[0].title is None
    with pytest.raises(MessageValidationError) as caught:
        list_msg(sections=(ListSection(title="T", rows=(ListRow(id="b", title="B"),)), untitled))
    assert caught.value.code == 131008
    assert caught.value.details == (
        "interactive.action.sections[1].title: required when there is more than one section"
    )


def test_list_row_ids_unique_across_sections() -> None:
    with pytest.raises(MessageValidationError) as caught:
        list_msg(
            sections=(
                ListSection(title="A", rows=(ListRow(id="x", title="1"),)),
                ListSection(title="B", rows=(ListRow(id="x", title="2"),)),
            )
        )
    assert caught.value.code == 131009


class TestMedia:
    def test_exactly_one_of_id_and_link(self) -> None:
        with pytest.raises(MessageValidationError) as both:
            MediaMessage(to=PHONE, media_type="image", media_id="1", link="https://x/a.png")
        assert both.value.code == 100
        with pytest.raises(MessageValidationError) as neither:
            MediaMessage(to=PHONE, media_type="video")
        assert neither.value.code == 131008
        assert (neither.value.details or "").startswith("video.id:")

    @pytest.mark.parametrize("media_type", ["audio", "sticker"])
    def test_no_caption_where_meta_allows_none(self, media_type: Any) -> None:
        with pytest.raises(MessageValidationError) as caught:
            MediaMessage(to=PHONE, media_type=media_type, media_id="1", caption="hi")
        assert caught.value.code == 100
        assert (
            caught.value.details
            == f"{media_type}.caption: {media_type} messages cannot have a caption"
        )

    @pytest.mark.parametrize("media_type", ["image", "video", "document"])
    def test_caption_where_meta_allows_it(self, media_type: Any) -> None:
        message = MediaMessage(to=PHONE, media_type=media_type, media_id="1", caption="hi")
        assert message.to_graph_body()[media_type] == {"id": "1", "caption": "hi"}

    def test_filename_only_on_documents(self) -> None:
        doc = MediaMessage(to=PHONE, media_type="document", media_id="9", filename="a.pdf")
        assert doc.to_graph_body()["document"] == {"id": "9", "filename": "a.pdf"}
        with pytest.raises(MessageValidationError) as caught:
            MediaMessage(to=PHONE, media_type="image", media_id="9", filename="a.png")
        assert caught.value.details == "image.filename: only documents have a filename"

    def test_link_must_be_http(self) -> None:
        with pytest.raises(MessageValidationError) as caught:
            MediaMessage(to=PHONE, media_type="image", link="ftp://x/a.png")
        assert caught.value.details == "image.link: must be an http(s) URL"

    def test_unknown_media_type_is_an_invalid_value(self) -> None:
        with pytest.raises(MessageValidationError) as caught:
            MediaMessage(to=PHONE, media_type="gif", media_id="1")  # type: ignore[arg-type]
        assert caught.value.code == 131009


class TestRecipient:
    def test_phone_goes_in_to(self) -> None:
        body = TextMessage(to=PHONE, body="hi").to_graph_body()
        assert body["to"] == PHONE
        assert "recipient" not in body

    def test_bsuid_goes_in_recipient(self) -> None:
        body = TextMessage(to=BSUID, body="hi").to_graph_body()
        assert body["recipient"] == BSUID
        assert "to" not in body

    def test_nonsense_recipient_rejected(self) -> None:
        with pytest.raises(MessageValidationError) as caught:
            TextMessage(to="hello", body="hi")
        assert caught.value.code == 100
        assert (caught.value.details or "").startswith("to:")

    def test_formatted_phone_accepted(self) -> None:
        assert (
            TextMessage(to="+1 (650) 555-1234", body="hi").to_graph_body()["to"]
            == "+1 (650) 555-1234"
        )


def test_quoted_reply_and_callback_data_on_the_envelope() -> None:
    body = MediaMessage(
        to=PHONE, media_type="sticker", media_id="5", reply_to="wamid.Q", callback_data="track-1"
    ).to_graph_body()
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": PHONE,
        "type": "sticker",
        "sticker": {"id": "5"},
        "context": {"message_id": "wamid.Q"},
        "biz_opaque_callback_data": "track-1",
    }


def test_reaction_set_and_remove() -> None:
    set_body = ReactionMessage(to=PHONE, message_id="wamid.A", emoji="👍").to_graph_body()
    assert set_body["reaction"] == {"message_id": "wamid.A", "emoji": "👍"}
    removal = ReactionMessage(to=PHONE, message_id="wamid.A")
    assert removal.removes
    assert removal.to_graph_body()["reaction"] == {"message_id": "wamid.A", "emoji": ""}
    with pytest.raises(MessageValidationError) as caught:
        ReactionMessage(to=PHONE, message_id="wamid.A", emoji="👍", reply_to="wamid.B")
    assert caught.value.details == "context: a reaction cannot quote a message"


def test_mark_as_read_bodies() -> None:
    assert MarkAsRead(message_id="wamid.A").to_graph_body() == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.A",
    }
    assert MarkAsRead(message_id="wamid.A", typing_indicator=True).to_graph_body()[
        "typing_indicator"
    ] == {"type": "text"}


def test_template_body_shape() -> None:
    message = TemplateMessage(
        to=PHONE,
        name="order_update",
        language="en_US",
        components=(
            TemplateComponent(
                type="header",
                parameters=(TemplateParameter(type="image", image={"link": "https://x/a.png"}),),
            ),
            TemplateComponent.body("Ada", "42"),
            TemplateComponent(
                type="button",
                sub_type="quick_reply",
                index=0,
                parameters=(TemplateParameter(type="payload", payload="STOP"),),
            ),
        ),
    )
    assert message.to_graph_body()["template"] == {
        "name": "order_update",
        "language": {"code": "en_US"},
        "components": [
            {
                "type": "header",
                "parameters": [{"type": "image", "image": {"link": "https://x/a.png"}}],
            },
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Ada"}, {"type": "text", "text": "42"}],
            },
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "0",
                "parameters": [{"type": "payload", "payload": "STOP"}],
            },
        ],
    }


def test_template_button_needs_sub_type_and_index() -> None:
    with pytest.raises(MessageValidationError) as caught:
        TemplateMessage(
            to=PHONE, name="t", language="en", components=(TemplateComponent(type="button"),)
        )
    assert caught.value.code == 131008
    assert caught.value.details == "template.components[0].sub_type: required for a button"


ROUND_TRIP: list[OutboundMessage] = [
    TextMessage(to=PHONE, body="hello", preview_url=True, reply_to="wamid.Q", callback_data="cb"),
    TextMessage(to=BSUID, body="hello"),
    TextMessage(to="120363012345678901", body="group hi", recipient_type="group"),
    MediaMessage(to=PHONE, media_type="image", media_id="111", caption="look"),
    MediaMessage(to=PHONE, media_type="video", link="https://x/v.mp4"),
    MediaMessage(to=PHONE, media_type="audio", media_id="222"),
    MediaMessage(to=PHONE, media_type="document", link="https://x/d.pdf", filename="d.pdf"),
    MediaMessage(to=BSUID, media_type="sticker", media_id="333"),
    TemplateMessage(
        to=PHONE,
        name="hello_world",
        language="en_US",
        components=(
            TemplateComponent.body("x"),
            TemplateComponent(
                type="button",
                sub_type="url",
                index=1,
                parameters=(TemplateParameter(type="text", text="path"),),
            ),
        ),
    ),
    TemplateMessage(to=PHONE, name="no_params", language="pt_BR"),
    buttons_msg(header="Head", footer="Foot", reply_to="wamid.Q"),
    list_msg(header="Head", footer="Foot", sections=sections([2, 3])),
    ReactionMessage(to=PHONE, message_id="wamid.A", emoji="❤️"),
    ReactionMessage(to=PHONE, message_id="wamid.A", emoji=""),
    MarkAsRead(message_id="wamid.A"),
    MarkAsRead(message_id="wamid.A", typing_indicator=True),
]


@pytest.mark.parametrize("message", ROUND_TRIP, ids=lambda m: type(m).__name__)
def test_round_trip_through_graph_body(message: OutboundMessage) -> None:
    body = message.to_graph_body()
    assert validate_send_body(body) == message
    assert type(message).from_graph_body(body) == message
    assert pickle.loads(pickle.dumps(message)) == message


def test_from_graph_body_insists_on_its_own_type() -> None:
    with pytest.raises(MessageValidationError) as caught:
        TextMessage.from_graph_body(MarkAsRead(message_id="wamid.A").to_graph_body())
    assert caught.value.code == 131009


def test_models_are_frozen() -> None:
    message = TextMessage(to=PHONE, body="hi")
    with pytest.raises(ValueError, match="frozen"):
        message.body = "changed"  # type: ignore[misc]


def test_unknown_constructor_argument_rejected() -> None:
    with pytest.raises(MessageValidationError) as caught:
        TextMessage(to=PHONE, body="hi", bodyy="typo")  # type: ignore[call-arg]
    assert caught.value.code == 100
    assert (caught.value.details or "").startswith("bodyy:")


def text_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "to": PHONE,
        "type": "text",
        "text": {"body": "hi"},
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


@pytest.mark.parametrize(
    ("body", "code", "details"),
    [
        (
            text_body(type=None, text=None, image={"id": "1"}),
            131008,
            "type: required parameter is missing",
        ),
        (text_body(type="location"), 131009, "type: unsupported message type 'location'"),
        (text_body(type=7), 100, "type: must be a string"),
        (
            text_body(messaging_product="sms"),
            131009,
            "messaging_product: must be whatsapp (got 'sms')",
        ),
        (
            text_body(messaging_product=None),
            131008,
            "messaging_product: required parameter is missing",
        ),
        (
            text_body(recipient=BSUID),
            100,
            "to, recipient: send exactly one of to and recipient, not both",
        ),
        (text_body(to=None), 131008, "to: required parameter is missing (or recipient)"),
        (
            text_body(to=None, recipient=PHONE),
            131009,
            f"recipient: '{PHONE}' is not a BSUID (like US.1349...)",
        ),
        (text_body(to=BSUID), 131009, "to: a BSUID goes in recipient, not in to"),
        (
            text_body(recipient_type="broadcast"),
            131009,
            "recipient_type: must be individual or group",
        ),
        (text_body(text={"body": 5}), 100, "text.body: must be a string"),
        (text_body(text="hi"), 100, "text: must be an object"),
        (text_body(text={}), 131008, "text.body: required parameter is missing"),
        (
            text_body(text={"body": "hi", "preview_url": "yes"}),
            100,
            "text.preview_url: must be a boolean",
        ),
        (
            text_body(context={"id": "x"}),
            131008,
            "context.message_id: required parameter is missing",
        ),
        (
            text_body(
                type="interactive",
                interactive={"type": "cta_url", "body": {"text": "b"}, "action": {}},
            ),
            131009,
            "interactive.type: unsupported interactive type 'cta_url'",
        ),
        (
            text_body(
                type="interactive",
                interactive={
                    "type": "button",
                    "body": {"text": "b"},
                    "action": {"buttons": [{"type": "reply", "reply": {"id": "a"}}]},
                },
            ),
            131008,
            "interactive.action.buttons[0].reply.title: required parameter is missing",
        ),
        (
            text_body(
                type="interactive",
                interactive={
                    "type": "button",
                    "header": {"type": "image", "image": {"id": "1"}},
                    "body": {"text": "b"},
                    "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A"}}]},
                },
            ),
            131009,
            "interactive.header.type: unsupported header type 'image'",
        ),
        (
            text_body(type="template", template={"name": "t", "language": {}}),
            131008,
            "template.language.code: required parameter is missing",
        ),
        (
            text_body(type="reaction", reaction={"message_id": "wamid.A"}),
            131008,
            "reaction.emoji: required parameter is missing",
        ),
        (
            {"messaging_product": "whatsapp", "status": "delivered", "message_id": "w"},
            131009,
            "status: must be read (got 'delivered')",
        ),
        (
            {"messaging_product": "whatsapp", "status": "read"},
            131008,
            "message_id: required parameter is missing",
        ),
        (
            {
                "messaging_product": "whatsapp",
                "status": "read",
                "message_id": "w",
                "typing_indicator": {"type": "audio"},
            },
            131009,
            "typing_indicator.type: must be text (got 'audio')",
        ),
    ],
)
def test_bad_bodies_get_clear_errors(body: dict[str, Any], code: int, details: str) -> None:
    with pytest.raises(MessageValidationError) as caught:
        validate_send_body(body)
    assert caught.value.code == code
    assert caught.value.details == details


def test_body_that_is_not_an_object() -> None:
    with pytest.raises(MessageValidationError) as caught:
        validate_send_body(["not", "a", "dict"])  # type: ignore[arg-type]
    assert caught.value.code == 100


def test_missing_type_defaults_to_text_like_meta() -> None:
    parsed = validate_send_body(text_body(type=None))
    assert parsed == TextMessage(to=PHONE, body="hi")


def test_limits_apply_when_parsing_too() -> None:
    with pytest.raises(MessageValidationError) as caught:
        validate_send_body(text_body(text={"body": "x" * 4097}))
    assert caught.value.code == 100
    assert caught.value.details == "text.body: at most 4096 characters (got 4097)"


def test_template_index_accepted_as_string_or_number() -> None:
    component = {"type": "button", "sub_type": "quick_reply", "index": "2", "parameters": []}
    body = text_body(
        type="template",
        text=None,
        template={"name": "t", "language": {"code": "en"}, "components": [component]},
    )
    parsed = validate_send_body(body)
    assert isinstance(parsed, TemplateMessage)
    assert parsed.components[0].index == 2
    component["index"] = 2
    assert validate_send_body(body) == parsed


def test_error_reads_like_meta() -> None:
    with pytest.raises(MessageValidationError) as caught:
        buttons_msg(buttons=make_buttons(4))
    error = caught.value
    assert error.message == "Invalid parameter"
    assert (
        str(error)
        == "[100] Invalid parameter (interactive.action.buttons: at most 3 buttons (got 4))"
    )
    assert pickle.loads(pickle.dumps(error)).details == error.details


@settings(max_examples=60, deadline=None)
@given(body=st.text(min_size=1, max_size=4096), preview=st.booleans())
def test_any_text_within_the_limit_round_trips(body: str, preview: bool) -> None:
    message = TextMessage(to=PHONE, body=body, preview_url=preview)
    assert validate_send_body(message.to_graph_body()) == message


@settings(max_examples=60, deadline=None)
@given(
    titles=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=3, unique=True),
)
def test_any_valid_buttons_round_trip(titles: list[str]) -> None:
    message = buttons_msg(buttons=tuple(ReplyButton(id=t, title=t) for t in titles))
    assert validate_send_body(message.to_graph_body()) == message
