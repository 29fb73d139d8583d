"""Outbound messages made by tools: whom they go to and the ledger item that sends them.

The committer uses the same `recipient` for a turn's replies, so a tool's message and the reply
to one chat go to the same address (and share the outbox's per-recipient lane, in order).
"""

from __future__ import annotations

from whatsray.outbox.ledger import OutboundItem
from whatsray.whatsapp.events import ChatKey
from whatsray.whatsapp.messages import TextMessage

__all__ = ["recipient", "text_item"]


def recipient(chat: ChatKey) -> str:
    """Whom to send to: `+` and the number (Meta's advice: a number without its `+` may get the
    business number's country code prepended), or the BSUID as is."""
    return "+" + chat.user if chat.user.isdigit() else chat.user


def text_item(
    chat: ChatKey,
    outbound_id: str,
    text: str,
    *,
    turn_id: str,
    part: int,
    created_at: float,
    purpose: str | None = None,
) -> OutboundItem:
    """A text message to `chat` as a ledger item (raises `ValueError` for an invalid text).
    `purpose` picks the template sent instead outside the 24-hour window (None: a reply)."""
    to = recipient(chat)
    return OutboundItem(
        outbound_id=outbound_id,
        chat=str(chat),
        phone_number_id=chat.phone_number_id,
        to=to,
        body=TextMessage(to=to, body=text).to_graph_body(),
        turn_id=turn_id,
        part=part,
        created_at=created_at,
        purpose=purpose,
    )
