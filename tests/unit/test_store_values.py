"""Pure parts of the store: migration planning, value types, row conversions."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
from pydantic import ValidationError

from whatsray.store import (
    MIGRATIONS,
    Migration,
    SchemaTooNewError,
    SessionSnapshot,
    StoreWriteError,
    TurnRecord,
    UnknownOutboundError,
)
from whatsray.store.migrations import check_migrations, pending_migrations
from whatsray.store.records import StatusChange, chat_string
from whatsray.store.rows import (
    digits_only,
    dump_json,
    inbound_row,
    load_json_object,
    message_from_row,
    outbound_summary,
    rows_table,
)
from whatsray.whatsapp.events import ChatKey, MessageEvent
from whatsray.whatsapp.parsing import parse_webhook

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"


def _message(name: str) -> MessageEvent:
    (event,) = parse_webhook((FIXTURES / name).read_bytes())
    assert isinstance(event, MessageEvent)
    return event


def _m(version: int) -> Migration:
    return Migration(version, f"step {version}", (f"CREATE TABLE t{version} (x INTEGER)",))


# -- migrations ----------------------------------------------------------------------------------


def test_the_shipped_migrations_are_well_formed() -> None:
    check_migrations(MIGRATIONS)
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_pending_migrations_from_empty_up_to_date_and_in_between() -> None:
    steps = [_m(1), _m(2), _m(3)]
    assert [m.version for m in pending_migrations(0, steps)] == [1, 2, 3]
    assert [m.version for m in pending_migrations(2, steps)] == [3]
    assert pending_migrations(3, steps) == []


def test_a_file_newer_than_the_code_is_refused() -> None:
    with pytest.raises(SchemaTooNewError, match="version 4 but this whatsray knows only up to 3"):
        pending_migrations(4, [_m(1), _m(2), _m(3)])


@pytest.mark.parametrize(
    "steps",
    [[_m(2)], [_m(1), _m(3)], [_m(1), _m(1)], [Migration(1, "empty", ())]],
    ids=["starts-at-2", "gap", "repeat", "no-statements"],
)
def test_malformed_migration_lists_are_rejected(steps: list[Migration]) -> None:
    with pytest.raises(ValueError, match="migration"):
        check_migrations(steps)


# -- value types ---------------------------------------------------------------------------------


def test_records_are_frozen_take_chat_keys_and_pickle() -> None:
    key = ChatKey(phone_number_id="106540352242922", user="16505551234")
    turn = TurnRecord(turn_id="t1", chat=key, input_ids=("w1",), started_at=1.0)
    assert turn.chat == "106540352242922:16505551234"
    with pytest.raises(ValidationError):
        turn.agent = "other"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(turn)) == turn
    snap = SessionSnapshot(chat=key, agent="faq", state={"k": [1, 2]})
    assert pickle.loads(pickle.dumps(snap)) == snap


def test_turn_counts_cannot_be_negative() -> None:
    with pytest.raises(ValidationError):
        TurnRecord(turn_id="t", chat="p:u", tokens_in=-1, started_at=0.0)


def test_errors_survive_pickling_with_their_message() -> None:
    for exc in (UnknownOutboundError("unknown outbound id 'x'"), StoreWriteError("boom")):
        again = pickle.loads(pickle.dumps(exc))
        assert type(again) is type(exc)
        assert str(again) == str(exc)
    assert isinstance(UnknownOutboundError("x"), KeyError)  # what the in-memory ledger raises
    assert str(UnknownOutboundError("unknown outbound id 'x'")) == "unknown outbound id 'x'"


def test_chat_string_is_canonical_and_checked() -> None:
    assert chat_string(ChatKey(phone_number_id="1", user="US.9")) == "1:US.9"
    assert chat_string("1:US.9") == "1:US.9"
    with pytest.raises(ValueError, match="not a chat key"):
        chat_string("no-colon")


# -- rows ----------------------------------------------------------------------------------------


def test_inbound_row_from_a_text_message() -> None:
    event = _message("message_text.json")
    row = inbound_row(event, now=2_000_000_000.0)
    assert row.message_id == event.message_id
    assert row.chat == "106540352242922:US.13491208655302741918"  # BSUID preferred
    assert (row.phone, row.bsuid, row.profile_name) == (
        "16505551234",
        "US.13491208655302741918",
        "Sheena Nelson",
    )
    assert (row.type, row.text) == ("text", "Does it come in another color?")
    assert row.at == 1749416383.0  # Meta's timestamp, not the receive time
    assert row.received_at == 2_000_000_000.0
    assert load_json_object(row.raw) == event.raw


def test_inbound_row_for_a_user_without_a_phone_number() -> None:
    row = inbound_row(_message("message_bsuid_only.json"), now=0.0)
    assert row.phone is None
    assert row.user == "US.13491208655302741918"
    assert row.profile_name == "sheena.plants"


def test_inbound_row_needs_a_chat() -> None:
    event = _message("message_text.json").model_copy(update={"chat": None})
    with pytest.raises(ValueError, match="no chat key"):
        inbound_row(event, now=0.0)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"type": "text", "text": {"body": "hello"}}, ("text", "hello")),
        ({"type": "image", "image": {"id": "1", "caption": "look"}}, ("image", "look")),
        ({"type": "document", "document": {"id": "1"}}, ("document", None)),
        (
            {"type": "interactive", "interactive": {"type": "button", "body": {"text": "Pick"}}},
            ("interactive", "Pick"),
        ),
        (
            {"type": "template", "template": {"name": "hello_world"}},
            ("template", "[template hello_world]"),
        ),
        ({"type": "reaction", "reaction": {"emoji": "👍"}}, ("reaction", "👍")),
        ({"type": "location", "location": {}}, ("location", None)),
        ({"text": {"body": 3}}, ("unknown", None)),
    ],
)
def test_outbound_summary(body: dict[str, object], expected: tuple[str, str | None]) -> None:
    assert outbound_summary(body) == expected


def test_rows_table_builds_one_list_per_column() -> None:
    sql, params = rows_table([("id", "VARCHAR"), ("n", "INTEGER")], [("a", 1), ("b", None)])
    assert sql == "SELECT unnest(?::VARCHAR[]) AS id, unnest(?::INTEGER[]) AS n"
    assert params == [["a", "b"], [1, None]]
    assert rows_table([("id", "VARCHAR")], [])[1] == [[]]


def test_json_helpers() -> None:
    assert dump_json({"é": [1, 2]}) == '{"é":[1,2]}'
    with pytest.raises(ValueError):
        dump_json({"x": math.nan})
    with pytest.raises(TypeError):
        dump_json({"x": object()})
    assert load_json_object(None) is None
    assert load_json_object("[1]") == {"value": [1]}
    assert digits_only("+1 (650) 555-1234") == "16505551234"


def test_message_from_row_keeps_the_status_history_in_order() -> None:
    row = {
        "id": "o1",
        "seq": 7,
        "chat": "p:u",
        "direction": "out",
        "type": "text",
        "text": "hi",
        "raw": '{"type":"text"}',
        "wamid": "wamid.1",
        "status": "read",
        "status_history": [
            {"status": "read", "changed_at": 3.0, "error_code": None},
            {"status": "sent", "changed_at": 1.0, "error_code": None},
        ],
        "turn_id": "t1",
        "created_at": 1.0,
        "updated_at": 3.0,
    }
    record = message_from_row(row)
    assert record.status_history == (
        StatusChange(status="read", at=3.0),
        StatusChange(status="sent", at=1.0),
    )
    assert record.raw == {"type": "text"}
