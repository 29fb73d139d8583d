"""Pure conversions between values and database rows (no I/O: unit-tested on their own)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from whatsray.outbox.ledger import DeadLetter, OutboundRecord
from whatsray.session.scheduled import SCHEDULED_TYPE, is_scheduled
from whatsray.store.records import MessageRecord, StatusChange
from whatsray.whatsapp.events import MessageEvent

__all__ = [
    "InboundRow",
    "column_names",
    "dead_letter_from_row",
    "digits_only",
    "dump_json",
    "inbound_row",
    "load_json_object",
    "message_from_row",
    "outbound_from_row",
    "outbound_summary",
    "rows_table",
]

_NON_DIGITS = re.compile(r"\D")


def dump_json(value: Any) -> str:
    """Compact JSON text; raises `TypeError`/`ValueError` for what JSON cannot hold."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def load_json_object(text: str | None) -> dict[str, Any] | None:
    """A JSON object column back to a dict; None for NULL. Not an object: wrapped, not lost."""
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else {"value": value}


def rows_table(
    columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[Any]]
) -> tuple[str, list[Any]]:
    """A SELECT that yields Python `rows` as a table, with its parameters: one list per column.

    `columns` are (name, DuckDB type) pairs from the caller's code, never from data. Many rows in
    one statement: DuckDB plans each statement afresh, which costs more than the rows do.
    """
    # Named columns, so an INSERT can list them (`SELECT *` would break when a table grows).
    select = ", ".join(f"unnest(?::{type_}[]) AS {name}" for name, type_ in columns)
    params = [[row[i] for row in rows] for i in range(len(columns))]
    return f"SELECT {select}", params


def column_names(columns: Sequence[tuple[str, str]]) -> str:
    """`"a, b, c"` for the (name, type) pairs given to `rows_table`."""
    return ", ".join(name for name, _ in columns)


def digits_only(text: str) -> str:
    return _NON_DIGITS.sub("", text)


@dataclass(frozen=True, slots=True)
class InboundRow:
    """What `record_inbound` writes: the message, and what it says about the chat and contact."""

    message_id: str
    chat: str
    phone_number_id: str
    user: str
    type: str
    text: str | None
    raw: str
    at: float  # Meta's timestamp (when the user wrote), else when it was received
    received_at: float
    phone: str | None
    bsuid: str | None
    profile_name: str | None
    # A scheduled input (a reminder's run, `whatsray.session.scheduled`): stored with its own
    # type and no wamid; it neither opens the 24-hour window nor tells us about the contact.
    scheduled: bool = False
    # False: the store wrote this contact's details lately (`ContactsSeen`): skip the upsert.
    update_contact: bool = True
    # Its outcome when no turn consumes it in the same write (docs/errors.md, "The account").
    outcome: str = "recorded"
    outcome_ref: str | None = None


def inbound_row(
    event: MessageEvent, now: float, outcome: str = "recorded", outcome_ref: str | None = None
) -> InboundRow:
    """Raises `ValueError` for an event that names no chat (nothing to file it under)."""
    if event.chat is None:
        raise ValueError(f"inbound message {event.idempotency_key!r} has no chat key")
    at = event.timestamp.timestamp() if event.timestamp is not None else now
    scheduled = is_scheduled(event)
    return InboundRow(
        message_id=event.message_id or event.idempotency_key,
        chat=str(event.chat),
        phone_number_id=event.chat.phone_number_id,
        user=event.chat.user,
        type=SCHEDULED_TYPE if scheduled else event.type.value,
        text=event.text,
        raw=dump_json(event.raw),
        at=at,
        received_at=now,
        phone=event.from_phone,
        bsuid=event.from_user_id,
        profile_name=event.profile_name,
        scheduled=scheduled,
        outcome=outcome,
        outcome_ref=outcome_ref,
    )


def _str_at(value: Any, *path: str) -> str | None:
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value if isinstance(value, str) else None


def outbound_summary(body: Mapping[str, Any]) -> tuple[str, str | None]:
    """The message type and the words a reader of the chat would see, from a Graph send body."""
    kind = body.get("type")
    type_ = kind if isinstance(kind, str) and kind else "unknown"
    if type_ == "text":
        text = _str_at(body, "text", "body")
    elif type_ in ("image", "video", "document", "audio", "sticker"):
        text = _str_at(body, type_, "caption")
    elif type_ == "interactive":
        text = _str_at(body, "interactive", "body", "text")
    elif type_ == "template":
        name = _str_at(body, "template", "name")
        text = f"[template {name}]" if name else None
    elif type_ == "reaction":
        text = _str_at(body, "reaction", "emoji")
    else:
        text = None
    return type_, text


def message_from_row(row: Mapping[str, Any]) -> MessageRecord:
    history = tuple(
        StatusChange(status=h["status"], at=h["changed_at"], error_code=h["error_code"])
        for h in row["status_history"] or ()
    )
    return MessageRecord(
        id=row["id"],
        seq=row["seq"],
        chat=row["chat"],
        direction=row["direction"],
        type=row["type"],
        text=row["text"],
        raw=load_json_object(row["raw"]),
        wamid=row["wamid"],
        status=row["status"],
        status_history=history,
        turn_id=row["turn_id"],
        outcome=row.get("outcome"),
        outcome_ref=row.get("outcome_ref"),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def outbound_from_row(row: Mapping[str, Any]) -> OutboundRecord:
    return OutboundRecord(
        outbound_id=row["outbound_id"],
        chat=row["chat"],
        phone_number_id=row["phone_number_id"],
        to=row["recipient"],
        body=load_json_object(row["body"]) or {},
        turn_id=row["turn_id"],
        part=row["part"],
        created_at=row["created_at"],
        status=row["status"],
        wamid=row["wamid"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        purpose=row.get("purpose"),  # migration 4
    )


def dead_letter_from_row(row: Mapping[str, Any]) -> DeadLetter:
    return DeadLetter(
        dead_letter_id=row["id"],
        outbound_id=row["outbound_id"],
        reason=row["reason"],
        error_code=row["error_code"],
        details=row["details"],
        created_at=row["created_at"],
        replayed_at=row["replayed_at"],
        replay_outbound_id=row["replay_outbound_id"],
    )
