"""A scheduled input: what a reminder's run puts in the chat's inbox partition.

It is a `MessageEvent`, so the chat's session handles it in order with the user's messages and
the agent answers it like one (it composes the reminder text). But the user did not write it:

- it never opens the 24-hour window (`opens_window` is False: the turn runner, the committer and
  the session leave the chat's last inbound time alone);
- the store keeps it with the message type `scheduled`, no wamid, and no contact update;
- it has no `message_id`, so no read receipt or typing indicator is sent for it.

The marker is `raw_type == "scheduled"` (the content is plain text: `[Scheduled reminder] ...`,
what the agent reads). `raw["scheduled"]` keeps the run's ids for the record. The event's
idempotency key is the run id, so the inbox stores one entry per run however often it is sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from whatsray.whatsapp.events import ChatKey, MessageEvent, MessageType
from whatsray.whatsapp.message_content import TextContent

__all__ = [
    "SCHEDULED_PREFIX",
    "SCHEDULED_TYPE",
    "is_scheduled",
    "opens_window",
    "scheduled_event",
]

SCHEDULED_TYPE = "scheduled"
"""`MessageEvent.raw_type` of a scheduled input, and its message type in the store."""

SCHEDULED_PREFIX = "[Scheduled reminder]"
"""What the agent reads before the job's instruction."""


def scheduled_event(
    *,
    run_id: str,
    job_id: str,
    job_name: str,
    chat: ChatKey,
    instruction: str,
    scheduled_for: float,
    due_at: float,
) -> MessageEvent:
    """The inbox event of one reminder run (the same arguments give the same event)."""
    meta: dict[str, Any] = {
        "run_id": run_id,
        "job_id": job_id,
        "job_name": job_name,
        "instruction": instruction,
        "scheduled_for": scheduled_for,
        "due_at": due_at,
    }
    return MessageEvent(
        idempotency_key=run_id,
        chat=chat,
        phone_number_id=chat.phone_number_id,
        timestamp=datetime.fromtimestamp(due_at, UTC),
        message_id=None,
        type=MessageType.TEXT,
        raw_type=SCHEDULED_TYPE,
        content=TextContent(body=f"{SCHEDULED_PREFIX} {instruction}"),
        raw={SCHEDULED_TYPE: meta},
    )


def is_scheduled(event: MessageEvent) -> bool:
    return event.raw_type == SCHEDULED_TYPE


def opens_window(event: MessageEvent) -> bool:
    """Whether this input is the user writing (and so opens the 24-hour window)."""
    return not is_scheduled(event)
