"""The tolerant reader: odd bodies are logged and kept or skipped, only malformed JSON raises.

Also: idempotency keys, the chat-key rule, timestamps, and `ChatKey` itself.
"""

from __future__ import annotations

import json
import logging
import pickle
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from whatsray.whatsapp.errors import InvalidWebhookPayload
from whatsray.whatsapp.events import (
    ChatKey,
    ErrorEvent,
    Event,
    MessageEvent,
    MessageType,
    OtherEvent,
    StatusEvent,
    StatusValue,
)
from whatsray.whatsapp.message_content import (
    InteractiveContent,
    InteractiveType,
    LocationContent,
    ReactionContent,
    TextContent,
    UnknownContent,
)
from whatsray.whatsapp.parsing import parse_webhook

PNID = "106540352242922"
PHONE = "16505551234"
BSUID = "US.13491208655302741918"


def body(value: Any, field: Any = "messages", waba_id: Any = "102290129340398") -> bytes:
    document = {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"value": value, "field": field}]}],
    }
    return json.dumps(document).encode()


def messages_value(*messages: Any, contacts: Any = None, metadata: Any = None) -> dict[str, Any]:
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": metadata if metadata is not None else {"phone_number_id": PNID},
    }
    if contacts is not None:
        value["contacts"] = contacts
    value["messages"] = list(messages)
    return value


def text_message(**overrides: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "from": PHONE,
        "id": "wamid.TEST1",
        "timestamp": "1749416383",
        "type": "text",
        "text": {"body": "hi"},
    }
    message.update(overrides)
    return {k: v for k, v in message.items() if v is not None}


def only(events: list[Event]) -> Any:
    assert len(events) == 1
    return events[0]


# --- unknown values become UNKNOWN, raw kept, a log line -----------------------------------------


def test_unknown_message_type_is_kept_raw(caplog: pytest.LogCaptureFixture) -> None:
    poll = {"question": "Lunch?", "options": ["pizza", "sushi"]}
    raw = text_message(type="poll", text=None, poll=poll)
    with caplog.at_level(logging.WARNING):
        event = only(parse_webhook(body(messages_value(raw))))
    assert isinstance(event, MessageEvent)
    assert event.type is MessageType.UNKNOWN
    assert event.raw_type == "poll"
    assert event.content == UnknownContent(raw_type="poll", payload=poll)
    assert event.raw == raw
    assert event.idempotency_key == "wamid.TEST1"
    assert event.chat == ChatKey(phone_number_id=PNID, user=PHONE)
    assert event.summary()["type"] == "unknown" and event.summary()["raw_type"] == "poll"
    assert "unknown WhatsApp message type 'poll'" in caplog.text


def test_unknown_status_is_kept_raw(caplog: pytest.LogCaptureFixture) -> None:
    raw = {
        "id": "wamid.OUT1",
        "status": "deleted",
        "timestamp": "1749416383",
        "recipient_id": PHONE,
    }
    value = {"metadata": {"phone_number_id": PNID}, "statuses": [raw]}
    with caplog.at_level(logging.WARNING):
        event = only(parse_webhook(body(value)))
    assert isinstance(event, StatusEvent)
    assert event.status is StatusValue.UNKNOWN
    assert event.raw_status == "deleted"
    assert event.idempotency_key == "wamid.OUT1:deleted"
    assert event.raw == raw
    assert "unknown status 'deleted'" in caplog.text


def test_unknown_interactive_type_is_kept_raw(caplog: pytest.LogCaptureFixture) -> None:
    interactive = {"type": "carousel_reply", "carousel_reply": {"id": "card-2"}}
    raw = text_message(type="interactive", text=None, interactive=interactive)
    with caplog.at_level(logging.WARNING):
        event = only(parse_webhook(body(messages_value(raw))))
    assert isinstance(event.content, InteractiveContent)
    assert event.content.interactive_type is InteractiveType.UNKNOWN
    assert event.content.raw_interactive_type == "carousel_reply"
    assert event.content.raw == interactive
    assert "carousel_reply" in caplog.text


@pytest.mark.parametrize(
    "reaction", [{"message_id": "wamid.X"}, {"message_id": "wamid.X", "emoji": ""}]
)
def test_reaction_without_emoji_is_a_removal(reaction: dict[str, Any]) -> None:
    raw = text_message(type="reaction", text=None, reaction=reaction)
    content = only(parse_webhook(body(messages_value(raw)))).content
    assert content == ReactionContent(message_id="wamid.X", emoji=None)
    assert content.removed


def test_flow_reply_with_bad_response_json_keeps_the_string(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nfm = {"type": "nfm_reply", "nfm_reply": {"response_json": "{not json", "name": "flow"}}
    raw = text_message(type="interactive", text=None, interactive=nfm)
    with caplog.at_level(logging.WARNING):
        content = only(parse_webhook(body(messages_value(raw)))).content
    assert content.interactive_type is InteractiveType.NFM_REPLY
    assert content.response_json is None
    assert content.response_json_raw == "{not json"
    assert "response_json" in caplog.text


def test_edit_of_an_edit_is_not_followed_forever() -> None:
    inner = {"type": "edit", "edit": {"message": {"type": "text", "text": {"body": "x"}}}}
    raw = text_message(
        type="edit", text=None, edit={"original_message_id": "wamid.O", "message": inner}
    )
    content = only(parse_webhook(body(messages_value(raw)))).content
    assert content.original_message_id == "wamid.O"
    assert isinstance(content.message, UnknownContent) and content.message.raw_type == "edit"


# --- wrong types and missing keys -----------------------------------------------------------


def test_numbers_where_strings_belong_are_read() -> None:
    raw = text_message(**{"from": 16505551234, "timestamp": 1749416383})
    event = only(
        parse_webhook(body(messages_value(raw, metadata={"phone_number_id": 106540352242922})))
    )
    assert event.from_phone == PHONE
    assert event.chat == ChatKey(phone_number_id=PNID, user=PHONE)
    assert event.timestamp == datetime(2025, 6, 8, 20, 59, 43, tzinfo=UTC)


@pytest.mark.parametrize("timestamp", ["soon", "", None, True, [1], {"s": 1}, "1e400", 10**30])
def test_garbage_timestamps_become_none(timestamp: Any) -> None:
    raw = text_message()
    raw["timestamp"] = timestamp
    event = only(parse_webhook(body(messages_value(raw))))
    assert event.timestamp is None
    assert event.text == "hi"


def test_wrong_types_inside_a_message_fall_back() -> None:
    raw = text_message(text=["not", "an", "object"], context="nope", referral=7, errors={"code": 1})
    event = only(parse_webhook(body(messages_value(raw))))
    assert event.content == TextContent(body="")
    assert event.context is None and event.referral is None and event.errors == ()
    location = text_message(
        type="location", text=None, location={"latitude": "37.5", "longitude": "x"}
    )
    content = only(parse_webhook(body(messages_value(location)))).content
    assert content == LocationContent(latitude=37.5, longitude=None)


def test_missing_metadata_gives_no_chat_but_keeps_the_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    value = {"contacts": [{"wa_id": PHONE, "profile": {"name": "A"}}], "messages": [text_message()]}
    with caplog.at_level(logging.WARNING):
        event = only(parse_webhook(body(value)))
    assert isinstance(event, MessageEvent)
    assert event.chat is None
    assert event.phone_number_id is None
    assert event.from_phone == PHONE and event.profile_name == "A"
    assert "phone_number_id" in caplog.text


def test_a_phone_number_id_that_cannot_be_a_chat_key_gives_no_chat() -> None:
    value = messages_value(text_message(), metadata={"phone_number_id": "1:2"})
    event = only(parse_webhook(body(value)))
    assert event.chat is None and event.phone_number_id == "1:2"


@pytest.mark.parametrize("document", [[], "text", 1, None, True, {}, {"entry": {}}, {"entry": "x"}])
def test_json_that_is_not_a_webhook_gives_no_events(document: Any) -> None:
    assert parse_webhook(json.dumps(document).encode()) == []


def test_bad_parts_are_skipped_and_good_parts_kept(caplog: pytest.LogCaptureFixture) -> None:
    good = {"value": messages_value(text_message()), "field": "messages"}
    document = {
        "object": "whatsapp_business_account",
        "entry": [
            "not an entry",
            {"id": "1", "changes": "not a list"},
            {
                "id": "2",
                "changes": [5, good, {"field": "messages", "value": {"messages": [1, None]}}],
            },
            {"id": "3"},
        ],
    }
    with caplog.at_level(logging.WARNING):
        events = parse_webhook(json.dumps(document).encode())
    assert [e.kind for e in events] == ["message"]
    assert events[0].waba_id == "2"
    assert "not an object" in caplog.text


def test_messages_that_are_not_a_list_are_skipped() -> None:
    value = {"metadata": {"phone_number_id": PNID}, "messages": {"id": "x"}, "statuses": "read"}
    assert parse_webhook(body(value)) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("messages", {"metadata": {"phone_number_id": PNID}, "contacts": []}),
        ("messages", "not an object"),
        (None, {"something": 1}),
        ("security", {"display_phone_number": "15550783881", "event": "PIN_CHANGED"}),
    ],
)
def test_changes_we_cannot_read_are_kept_as_other_events(field: Any, value: Any) -> None:
    event = only(parse_webhook(body(value, field=field)))
    assert isinstance(event, OtherEvent)
    assert event.field == field
    assert event.value == value


def test_missing_ids_give_stable_content_keys() -> None:
    raw = text_message(id=None)
    first = only(parse_webhook(body(messages_value(raw))))
    again = only(parse_webhook(body(messages_value(raw))))
    other = only(parse_webhook(body(messages_value(text_message(id=None, text={"body": "ho"})))))
    assert first.message_id is None
    assert first.idempotency_key.startswith("message:")
    assert first.idempotency_key == again.idempotency_key != other.idempotency_key
    status = only(parse_webhook(body({"statuses": [{"status": "read", "recipient_id": PHONE}]})))
    assert status.idempotency_key.startswith("status:")


# --- malformed bodies raise InvalidWebhookPayload, and only that ---------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"not json",
        b'{"entry": [}',
        b"\xff\xfe{}",
        '{"entry": []}'.encode("utf-16"),
        b'{"a": NaN}',
        b"[Infinity]",
        b"\xef\xbb\xbf{}",  # a UTF-8 byte-order mark is not JSON
        b"[" * 100_000,
    ],
)
def test_malformed_bodies_raise_invalid_webhook_payload(raw: bytes) -> None:
    with pytest.raises(InvalidWebhookPayload):
        parse_webhook(raw)


def test_deeply_nested_valid_json_is_invalid_not_a_crash() -> None:
    raw = b"[" * 50_000 + b"]" * 50_000
    with pytest.raises(InvalidWebhookPayload):
        parse_webhook(raw)


def test_lone_surrogates_become_replacement_characters() -> None:
    raw = body(messages_value(text_message(text={"body": "ok"}))).replace(b'"ok"', b'"a\\ud83d"')
    event = only(parse_webhook(raw))
    assert event.text == "a\ufffd"
    event.summary()["text"].encode("utf-8")  # encodable: Redis, DuckDB and the CLI can take it
    assert TypeAdapter(Event).dump_json(event)


# --- keys, chats, timestamps ------------------------------------------------------------------


def test_keys_are_stable_across_parses_and_reserialisation() -> None:
    value = {"event": "VERIFIED_ACCOUNT", "phone_number": "15550783881"}
    compact = body(value, field="account_update")
    pretty = json.dumps(json.loads(compact), indent=4, sort_keys=True).encode()
    keys = {only(parse_webhook(raw)).idempotency_key for raw in (compact, compact, pretty)}
    assert len(keys) == 1
    changed = body({**value, "event": "DISABLED_UPDATE"}, field="account_update")
    assert only(parse_webhook(changed)).idempotency_key not in keys


def test_same_value_under_another_field_or_account_gets_another_key() -> None:
    value = {"event": "APPROVED"}
    a = only(parse_webhook(body(value, field="account_update")))
    b = only(parse_webhook(body(value, field="message_template_status_update")))
    c = only(parse_webhook(body(value, field="account_update", waba_id="999")))
    assert len({a.idempotency_key, b.idempotency_key, c.idempotency_key}) == 3


def test_two_equal_errors_in_one_value_get_distinct_keys() -> None:
    error = {"code": 131000, "title": "Something went wrong"}
    value = {"metadata": {"phone_number_id": PNID}, "errors": [error, error]}
    first, second = parse_webhook(body(value))
    assert isinstance(first, ErrorEvent) and isinstance(second, ErrorEvent)
    assert first.idempotency_key != second.idempotency_key
    assert first.code == second.code == 131000


def test_chat_rule_phone_only() -> None:
    event = only(parse_webhook(body(messages_value(text_message()))))
    assert event.chat == ChatKey(phone_number_id=PNID, user=PHONE)


def test_chat_rule_bsuid_only_on_the_contact() -> None:
    raw = text_message(**{"from": None})
    contacts = [{"user_id": BSUID, "profile": {"name": "u"}}]
    event = only(parse_webhook(body(messages_value(raw, contacts=contacts))))
    assert event.from_phone is None and event.from_user_id == BSUID
    assert event.chat == ChatKey(phone_number_id=PNID, user=BSUID)


def test_chat_rule_bsuid_on_the_contact_wins_over_the_phone() -> None:
    contacts = [{"wa_id": PHONE, "user_id": BSUID, "profile": {"name": "u"}}]
    event = only(parse_webhook(body(messages_value(text_message(), contacts=contacts))))
    assert (event.from_phone, event.from_user_id) == (PHONE, BSUID)
    assert str(event.chat) == f"{PNID}:{BSUID}"


def test_profile_name_comes_from_the_senders_contact() -> None:
    contacts = [
        {"wa_id": "111", "profile": {"name": "One"}},
        {"wa_id": "222", "user_id": "US.2", "profile": {"name": "Two"}},
    ]
    messages = [
        text_message(**{"from": "222", "id": "w2"}),
        text_message(**{"from": "333", "id": "w3"}),
    ]
    first, second = parse_webhook(body(messages_value(*messages, contacts=contacts)))
    assert isinstance(first, MessageEvent) and isinstance(second, MessageEvent)
    assert (first.profile_name, first.from_user_id) == ("Two", "US.2")
    assert second.profile_name is None and second.from_user_id is None


def test_a_single_contact_with_another_phone_is_not_the_sender() -> None:
    contacts = [{"wa_id": "999", "user_id": "US.9", "profile": {"name": "Someone else"}}]
    event = only(parse_webhook(body(messages_value(text_message(), contacts=contacts))))
    assert event.profile_name is None
    assert event.chat == ChatKey(phone_number_id=PNID, user=PHONE)


def test_a_single_contact_is_the_sender_when_nothing_contradicts_it() -> None:
    contacts = [{"profile": {"name": "Only"}}]
    event = only(parse_webhook(body(messages_value(text_message(), contacts=contacts))))
    assert event.profile_name == "Only"


def test_timestamps_are_aware_utc() -> None:
    event = only(parse_webhook(body(messages_value(text_message()))))
    assert event.timestamp is not None
    assert event.timestamp.tzinfo is UTC
    assert event.timestamp.timestamp() == 1749416383


def test_chat_key_string_form_and_parse() -> None:
    key = ChatKey(phone_number_id=PNID, user=BSUID)
    assert str(key) == "106540352242922:US.13491208655302741918"
    assert ChatKey.parse(str(key)) == key
    odd = ChatKey(phone_number_id=PNID, user="a:b")  # only the first ':' separates
    assert ChatKey.parse(str(odd)) == odd
    assert hash(key) == hash(ChatKey.parse(str(key)))
    assert pickle.loads(pickle.dumps(key)) == key


@pytest.mark.parametrize("text", ["", "no-colon", ":US.1", "106540352242922:"])
def test_chat_key_parse_rejects_non_keys(text: str) -> None:
    with pytest.raises(ValueError):
        ChatKey.parse(text)


def test_chat_key_refuses_a_colon_in_the_phone_number_id() -> None:
    with pytest.raises(ValueError):
        ChatKey(phone_number_id="1:2", user="u")


# --- property tests: nothing but InvalidWebhookPayload, ever -----------------------------------

TRICKY = st.sampled_from(
    [
        "",
        " ",
        "0",
        "-1",
        "1e400",
        "NaN",
        "true",
        "null",
        "\ud83d",
        "\udc00x",
        "äöå",
        "a:b",
        "\U0001d518",
    ]
)
MESSAGE_TYPES = [t.value for t in MessageType] + ["poll", "ephemeral"]
KEYS = st.sampled_from(
    [
        "object",
        "entry",
        "id",
        "changes",
        "field",
        "value",
        "metadata",
        "phone_number_id",
        "contacts",
        "wa_id",
        "user_id",
        "profile",
        "name",
        "messages",
        "statuses",
        "errors",
        "from",
        "type",
        "timestamp",
        "status",
        "code",
        *MESSAGE_TYPES,
    ]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | TRICKY
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(KEYS | st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=25,
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually the webhook-like shape, sometimes any JSON value in its place."""
    return st.integers(0, 5).flatmap(lambda n: JSON if n == 0 else strategy)


def _obj(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(required, optional=optional)


_ERROR = _obj({"code": _maybe(st.integers())}, {"title": JSON, "error_data": JSON})
_INNER_MESSAGE = _obj(
    {"type": _maybe(st.sampled_from(MESSAGE_TYPES))}, {t: JSON for t in MESSAGE_TYPES}
)
_PAYLOADS = {t: JSON for t in MESSAGE_TYPES} | {
    "interactive": _obj(
        {"type": _maybe(st.sampled_from([t.value for t in InteractiveType]))},
        {
            "button_reply": JSON,
            "list_reply": JSON,
            "nfm_reply": _obj({}, {"response_json": _maybe(JSON.map(json.dumps)), "name": JSON}),
        },
    ),
    "edit": _obj({"original_message_id": JSON}, {"message": _maybe(_INNER_MESSAGE)}),
    "reaction": _obj({"message_id": JSON}, {"emoji": JSON}),
}
_MESSAGE = _obj(
    {
        "type": _maybe(st.sampled_from(MESSAGE_TYPES)),
        "from": _maybe(st.just(PHONE)),
        "id": _maybe(st.just("wamid.A") | st.just("wamid.B")),
    },
    {
        "from_user_id": _maybe(st.just(BSUID)),
        "timestamp": _maybe(st.integers().map(str)),
        "context": JSON,
        "referral": JSON,
        "errors": _maybe(st.lists(_ERROR, max_size=2)),
        **{k: _maybe(v) for k, v in _PAYLOADS.items()},
    },
)
_STATUS = _obj(
    {
        "id": _maybe(st.just("wamid.OUT")),
        "status": _maybe(st.sampled_from([s.value for s in StatusValue] + ["deleted"])),
    },
    {
        "timestamp": JSON,
        "recipient_id": JSON,
        "recipient_user_id": JSON,
        "pricing": JSON,
        "conversation": JSON,
        "errors": _maybe(st.lists(_ERROR, max_size=2)),
    },
)
_CONTACT = _obj({}, {"wa_id": JSON, "user_id": JSON, "profile": JSON})
_VALUE = _obj(
    {"metadata": _maybe(_obj({"phone_number_id": _maybe(st.just(PNID))}, {}))},
    {
        "contacts": _maybe(st.lists(_maybe(_CONTACT), max_size=2)),
        "messages": _maybe(st.lists(_maybe(_MESSAGE), max_size=3)),
        "statuses": _maybe(st.lists(_maybe(_STATUS), max_size=3)),
        "errors": _maybe(st.lists(_maybe(_ERROR), max_size=2)),
    },
)
_CHANGE = _obj(
    {
        "field": _maybe(st.sampled_from(["messages", "messages", "account_update", "calls"])),
        "value": _maybe(_VALUE),
    },
    {},
)
_ENTRY = _obj({"id": JSON, "changes": _maybe(st.lists(_maybe(_CHANGE), max_size=3))}, {})
WEBHOOK_SHAPED = _obj(
    {"entry": _maybe(st.lists(_maybe(_ENTRY), max_size=3))},
    {"object": _maybe(st.just("whatsapp_business_account"))},
)
PROPERTY_SETTINGS = settings(
    deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow]
)
_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def _check_events(events: list[Event]) -> None:
    for event in events:
        json.dumps(event.summary(), ensure_ascii=False).encode("utf-8")
        assert pickle.loads(pickle.dumps(event)) == event
        assert _ADAPTER.validate_json(_ADAPTER.dump_json(event)) == event


@PROPERTY_SETTINGS
@given(JSON)
def test_any_json_value_parses_without_raising(document: Any) -> None:
    _check_events(parse_webhook(json.dumps(document).encode()))


@PROPERTY_SETTINGS
@given(WEBHOOK_SHAPED)
def test_webhook_shaped_json_parses_without_raising(document: Any) -> None:
    _check_events(parse_webhook(json.dumps(document).encode()))


@PROPERTY_SETTINGS
@given(
    st.binary(max_size=200)
    | st.text(max_size=100).map(lambda s: s.encode("utf-8", "surrogatepass"))
)
def test_arbitrary_bytes_parse_or_raise_invalid_webhook_payload(raw: bytes) -> None:
    try:
        events = parse_webhook(raw)
    except InvalidWebhookPayload:
        return
    _check_events(events)
