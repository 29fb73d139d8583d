"""Shared builders for the store's integration tests (real DuckDB files in tmp_path)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import duckdb

from whatsray.outbox.ledger import OutboundItem
from whatsray.whatsapp.events import ChatKey, MessageEvent
from whatsray.whatsapp.message_content import MessageType, TextContent

PNID = "106540352242922"


class FakeClock:
    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def chat(user: str = "16505551234") -> ChatKey:
    return ChatKey(phone_number_id=PNID, user=user)


def inbound(
    wamid: str,
    *,
    user: str = "16505551234",
    text: str = "hi",
    at: float | None = 1_750_000_000.0,
    name: str | None = None,
    bsuid: str | None = None,
) -> MessageEvent:
    return MessageEvent(
        idempotency_key=f"message:{wamid}",
        chat=chat(bsuid or user),
        phone_number_id=PNID,
        message_id=wamid,
        type=MessageType.TEXT,
        content=TextContent(body=text),
        from_phone=user,
        from_user_id=bsuid,
        profile_name=name,
        timestamp=datetime.fromtimestamp(at, UTC) if at is not None else None,
        raw={"id": wamid, "from": user, "type": "text", "text": {"body": text}},
    )


def outbound(
    outbound_id: str,
    *,
    user: str = "16505551234",
    text: str = "hello",
    turn_id: str | None = None,
    part: int = 0,
    created_at: float = 1_750_000_001.0,
) -> OutboundItem:
    return OutboundItem(
        outbound_id=outbound_id,
        chat=str(chat(user)),
        phone_number_id=PNID,
        to=user,
        body={
            "messaging_product": "whatsapp",
            "to": user,
            "type": "text",
            "text": {"body": text},
            "biz_opaque_callback_data": outbound_id,
        },
        turn_id=turn_id,
        part=part,
        created_at=created_at,
    )


def write_as_an_old_version(
    path: Path, *, wamid: str, user: str = "16505551234", turn_id: str | None = None
) -> None:
    """A message and its contact written the way every schema since version 1 holds them, with
    plain SQL: the file's code was older than today's (whose writes name newer columns)."""
    key = str(chat(user))
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            "INSERT INTO contacts (chat, phone_number_id, phone, first_seen, last_seen)"
            " VALUES (?, ?, ?, 1, 1)",
            [key, PNID, user],
        )
        conn.execute(
            "INSERT INTO messages (id, chat, direction, type, text, raw, wamid, status, turn_id,"
            " created_at, updated_at) VALUES (?, ?, 'in', 'text', 'hi', '{}', ?, 'received', ?,"
            " 1, 1)",
            [wamid, key, wamid, turn_id],
        )
