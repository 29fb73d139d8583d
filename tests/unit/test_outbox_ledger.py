"""merge_status and the in-memory ledger (the reference for the DuckDB store's behaviour)."""

from __future__ import annotations

import pickle

import pytest

from whatsray.outbox import InMemoryLedger, OutboundItem, OutboundLedger, merge_status
from whatsray.outbox.ledger import OutboundRecord

# (current, incoming) -> result. Progress only moves forward; failed is final; dead beats all.
MERGE_TABLE = [
    ("pending", "sent", "sent"),
    ("pending", "delivered", "delivered"),
    ("pending", "read", "read"),
    ("sent", "pending", "sent"),
    ("sent", "delivered", "delivered"),
    ("sent", "read", "read"),
    ("delivered", "sent", "delivered"),
    ("delivered", "read", "read"),
    ("read", "sent", "read"),
    ("read", "delivered", "read"),
    ("read", "read", "read"),
    ("delivered", "played", "read"),
    ("pending", "failed", "failed"),
    ("sent", "failed", "failed"),
    ("read", "failed", "failed"),
    ("failed", "sent", "failed"),
    ("failed", "read", "failed"),
    ("failed", "failed", "failed"),
    ("failed", "dead", "dead"),
    ("pending", "dead", "dead"),
    ("dead", "failed", "dead"),
    ("dead", "read", "dead"),
    ("dead", "pending", "dead"),
    ("sent", "unknown", "sent"),  # unknown values never move the status
    ("delivered", "deleted", "delivered"),
    ("garbage", "sent", "sent"),
]


@pytest.mark.parametrize(("current", "incoming", "expected"), MERGE_TABLE)
def test_merge_status(current: str, incoming: str, expected: str) -> None:
    assert merge_status(current, incoming) == expected


def _item(outbound_id: str = "t1:0") -> OutboundItem:
    body = {"messaging_product": "whatsapp", "to": "+15551234567", "type": "text"}
    return OutboundItem(outbound_id, "pn:15551234567", "pn", "+15551234567", body, "t1", 0, 5.0)


def test_values_are_frozen_and_pickle() -> None:
    item = _item()
    record = OutboundRecord.from_item(item)
    assert pickle.loads(pickle.dumps(item)) == item
    assert pickle.loads(pickle.dumps(record)) == record
    assert record.to_item() == item
    with pytest.raises(AttributeError):
        item.outbound_id = "other"  # type: ignore[misc]


async def test_in_memory_ledger_is_an_outbound_ledger() -> None:
    ledger = InMemoryLedger()
    assert isinstance(ledger, OutboundLedger)

    assert await ledger.record_outbound(_item()) is True
    assert await ledger.record_outbound(_item()) is False
    assert await ledger.note_attempt("t1:0") == 1
    assert await ledger.note_attempt("t1:0", "ServerError(131000)") == 2
    await ledger.mark_sent("t1:0", "wamid.A")
    assert await ledger.apply_status("wamid.A", "read", 7.0, None) == "read"
    assert await ledger.apply_status("wamid.B", "read", 7.0, None) is None
    await ledger.mark_sent("t1:0", "wamid.A")  # late: never moves the status back

    record = await ledger.get_outbound("t1:0")
    assert record is not None
    assert (record.status, record.wamid, record.attempts, record.last_error) == (
        "read",
        "wamid.A",
        2,
        "ServerError(131000)",
    )


async def test_dead_letters_are_recorded_and_replayed_once() -> None:
    ledger = InMemoryLedger()
    await ledger.record_outbound(_item())
    await ledger.mark_failed("t1:0", "permanent_error:UndeliverableError", 131026)
    dead_letter_id = await ledger.add_dead_letter("t1:0", "permanent_error", 131026, "details")

    record = await ledger.get_outbound("t1:0")
    assert record is not None and record.status == "dead"
    assert record.last_error == "permanent_error:UndeliverableError"
    await ledger.mark_dead_letter_replayed(dead_letter_id, "replay-1", 10.0)
    await ledger.mark_dead_letter_replayed(dead_letter_id, "replay-2", 11.0)  # first call wins
    await ledger.mark_dead_letter_replayed("nope", "replay-3", 12.0)  # unknown: ignored
    letter = await ledger.get_dead_letter(dead_letter_id)
    assert letter is not None
    assert (letter.replay_outbound_id, letter.replayed_at) == ("replay-1", 10.0)
    assert await ledger.get_dead_letter("nope") is None
    with pytest.raises(KeyError):
        await ledger.mark_sent("unknown", "wamid.X")
