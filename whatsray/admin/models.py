"""The admin API's request and response bodies (its public contract, shown in the OpenAPI doc).

Responses are built from the store's records but are their own models, so the store can change
its internals without changing what API clients see. Times are unix seconds, as in the store.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from whatsray.inbox.values import UnresolvedEntry
from whatsray.outbox.ledger import DeadLetter, OutboundRecord
from whatsray.outbox.window import window_open
from whatsray.store.quarantine import QuarantineRecord, UnresolvedMessage
from whatsray.store.records import ChatRecord, Contact, MessageRecord, StatusChange
from whatsray.whatsapp.limits import MAX_TEXT_BODY_CHARS
from whatsray.whatsapp.messages import is_bsuid

__all__ = [
    "AgentLoadOut",
    "ChatOut",
    "ChatsPage",
    "ContactOut",
    "ContactsPage",
    "DeadLetterOut",
    "DeadLettersPage",
    "EngineLoadOut",
    "ErrorBody",
    "FieldError",
    "InferenceOut",
    "MessageOut",
    "MessagesPage",
    "OutboundOut",
    "QuarantineOut",
    "QuarantinePage",
    "SendMessageRequest",
    "SendMessageResponse",
    "UnresolvedOut",
    "UnresolvedPage",
    "normalize_user",
]

IDEMPOTENCY_KEY_MAX = 128
_PHONE = re.compile(r"\+?\d{5,15}")  # as `whatsray.whatsapp.messages` checks `to`
_PHONE_SEPARATORS = re.compile(r"[\s\-().]")
_IDEMPOTENCY_KEY = re.compile(r"[!-~]+")  # printable ASCII, no spaces


def normalize_user(value: str) -> str | None:
    """A user as chats are keyed: a BSUID as is, a phone number as digits (Meta's `wa_id`,
    so `+1 (555) 123-4567` is `15551234567`); None for anything else."""
    value = value.strip()
    if is_bsuid(value):
        return value
    phone = _PHONE_SEPARATORS.sub("", value)
    return phone.lstrip("+") if _PHONE.fullmatch(phone) else None


class _Body(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- requests -------------------------------------------------------------------------------


class SendMessageRequest(_Body):
    """A free-form text message to a user, within the 24-hour customer service window."""

    model_config = ConfigDict(frozen=True, extra="forbid")  # a typo'd field is an error

    to: str = Field(
        description="The user: a phone number in any usual format, or a BSUID (`US.1349...`).",
        examples=["+15551234567"],
    )
    text: str = Field(description=f"1 to {MAX_TEXT_BODY_CHARS} characters.", examples=["Hi!"])
    phone_number_id: str | None = Field(
        default=None, description="The business number to send from; default: the first one."
    )
    idempotency_key: str | None = Field(
        default=None,
        description=(
            "Makes a retried call send once: the same key (on the same number) names the same"
            f" message. 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters, no spaces."
        ),
        examples=["order-1234-shipped"],
    )

    @field_validator("to")
    @classmethod
    def _check_to(cls, value: str) -> str:
        user = normalize_user(value)
        if user is None:
            raise PydanticCustomError(
                "invalid_recipient",
                "{value} is neither a phone number (5 to 15 digits) nor a BSUID",
                {"value": repr(value[:64])},
            )
        return user

    @field_validator("text")
    @classmethod
    def _check_text(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("empty_text", "must not be empty or only spaces")
        if len(value) > MAX_TEXT_BODY_CHARS:
            raise PydanticCustomError(
                "text_too_long",
                "at most {max} characters (got {got})",
                {"max": MAX_TEXT_BODY_CHARS, "got": len(value)},
            )
        return value

    @field_validator("idempotency_key")
    @classmethod
    def _check_key(cls, value: str | None) -> str | None:
        if value is not None and (
            len(value) > IDEMPOTENCY_KEY_MAX or not _IDEMPOTENCY_KEY.fullmatch(value)
        ):
            raise PydanticCustomError(
                "invalid_idempotency_key",
                "1 to {max} printable ASCII characters without spaces",
                {"max": IDEMPOTENCY_KEY_MAX},
            )
        return value


# --- responses ------------------------------------------------------------------------------


class OutboundOut(_Body):
    """An outbound message as the outbox's ledger knows it."""

    outbound_id: str
    chat: str
    phone_number_id: str
    to: str
    type: str | None
    text: str | None = Field(description="The text of a text message (else null).")
    status: str = Field(description='"pending", "sent", "delivered", "read", "failed" or "dead".')
    wamid: str | None
    attempts: int
    last_error: str | None
    turn_id: str | None
    part: int
    created_at: float

    @classmethod
    def from_record(cls, record: OutboundRecord) -> OutboundOut:
        body = record.body
        kind = body.get("type")
        text = body.get("text")
        return cls(
            outbound_id=record.outbound_id,
            chat=record.chat,
            phone_number_id=record.phone_number_id,
            to=record.to,
            type=kind if isinstance(kind, str) else None,
            text=text.get("body") if kind == "text" and isinstance(text, dict) else None,
            status=record.status,
            wamid=record.wamid,
            attempts=record.attempts,
            last_error=record.last_error,
            turn_id=record.turn_id,
            part=record.part,
            created_at=record.created_at,
        )


class SendMessageResponse(_Body):
    outbound_id: str
    status: str = Field(description='"pending" when just accepted; the current status on a retry.')
    chat: str
    to: str
    phone_number_id: str
    created: bool = Field(description="False when the idempotency key named an earlier send.")


class MessageOut(_Body):
    """A message in a chat, either way. `seq` orders the chat and is the `before` cursor."""

    id: str = Field(description="The wamid of an inbound message, the outbound id of ours.")
    seq: int
    chat: str
    direction: str = Field(description='"in" (from the user) or "out" (to the user).')
    type: str
    text: str | None
    wamid: str | None
    status: str | None
    status_history: list[StatusChange]
    turn_id: str | None
    created_at: float
    updated_at: float
    raw: dict[str, Any] | None = Field(
        description="Meta's payload (inbound) or the Graph API send body (outbound)."
    )

    @classmethod
    def from_record(cls, record: MessageRecord) -> MessageOut:
        return cls(
            **record.model_dump(exclude={"status_history"}),
            status_history=list(record.status_history),
        )


class MessagesPage(_Body):
    chat: str
    messages: list[MessageOut] = Field(description="Oldest first.")
    next_before: int | None = Field(
        description="Pass as `before` for the older page; null when there is none."
    )


class ChatOut(_Body):
    chat: str
    phone_number_id: str
    user: str
    agent: str | None
    handoff: bool
    last_inbound_at: float | None
    window_open: bool = Field(description="Whether a free-form message may be sent now.")
    created_at: float
    updated_at: float

    @classmethod
    def from_record(cls, record: ChatRecord, now: float) -> ChatOut:
        return cls(**record.model_dump(), window_open=window_open(record.last_inbound_at, now))


class ChatsPage(_Body):
    chats: list[ChatOut] = Field(description="Most recently active first.")
    limit: int
    offset: int
    next_offset: int | None = Field(description="The next page's offset; null on the last page.")


class HandoffChatsOut(_Body):
    chats: list[ChatOut] = Field(
        description="Chats handed to a person, most recently active first."
    )


class ContactOut(_Body):
    chat: str
    phone_number_id: str
    phone: str | None
    bsuid: str | None
    profile_name: str | None
    first_seen: float
    last_seen: float

    @classmethod
    def from_record(cls, record: Contact) -> ContactOut:
        return cls(**record.model_dump())


class ContactsPage(_Body):
    q: str
    contacts: list[ContactOut] = Field(description="Most recently seen first.")


class DeadLetterOut(_Body):
    dead_letter_id: str
    outbound_id: str
    reason: str = Field(examples=["outside_window", "permanent_error:UndeliverableError"])
    error_code: int | None
    details: str | None
    created_at: float
    replayed_at: float | None
    replay_outbound_id: str | None
    message: OutboundOut | None = Field(description="The message that was given up on.")

    @classmethod
    def from_record(cls, letter: DeadLetter, message: OutboundRecord | None) -> DeadLetterOut:
        return cls(
            dead_letter_id=letter.dead_letter_id,
            outbound_id=letter.outbound_id,
            reason=letter.reason,
            error_code=letter.error_code,
            details=letter.details,
            created_at=letter.created_at,
            replayed_at=letter.replayed_at,
            replay_outbound_id=letter.replay_outbound_id,
            message=OutboundOut.from_record(message) if message is not None else None,
        )


class DeadLettersPage(_Body):
    dead_letters: list[DeadLetterOut] = Field(description="Newest first.")
    limit: int
    offset: int
    next_offset: int | None


class UnresolvedOut(_Body):
    """One inbound item without an outcome: an inbox entry not acked yet, or a stored inbound
    message whose outcome is still unset."""

    state: Literal["pending", "undelivered", "no_outcome"] = Field(
        description=(
            '"pending": delivered to its session host and never acked (the host is stuck on it,'
            ' or died with it); "undelivered": appended and not read yet (the host is behind,'
            ' or not running); "no_outcome": a stored inbound message with no outcome (a'
            " replayed one whose turn is not committed yet, or one that fell through)."
        )
    )
    age_s: float = Field(description="Seconds since it was appended (stored, for no_outcome).")
    kind: str | None = Field(
        description='The event\'s kind ("message", "status", ...), or "poison" for an inbox'
        " entry that does not decode."
    )
    event_id: str | None = Field(
        description="The event's idempotency key (a message's wamid); null for poison."
    )
    chat: str | None
    partition: int | None = Field(description="The inbox partition (null for no_outcome).")
    entry_id: str | None = Field(description="The stream entry id (null for no_outcome).")
    deliveries: int | None = Field(description="Times delivered to a host (pending only).")
    poison: str | None = Field(description="Why the entry does not decode (poison only).")
    message_type: str | None = Field(description="The message's type (no_outcome only).")

    @classmethod
    def from_entry(cls, entry: UnresolvedEntry) -> UnresolvedOut:
        return cls(
            state=entry.state,
            age_s=entry.age_s,
            kind=entry.kind,
            event_id=entry.event_id,
            chat=entry.chat,
            partition=entry.partition,
            entry_id=entry.entry_id,
            deliveries=entry.deliveries,
            poison=entry.poison,
            message_type=None,
        )

    @classmethod
    def from_message(cls, message: UnresolvedMessage, now: float) -> UnresolvedOut:
        return cls(
            state="no_outcome",
            age_s=max(0.0, now - message.created_at),
            kind="message",
            event_id=message.message_id,
            chat=message.chat,
            partition=None,
            entry_id=None,
            deliveries=None,
            poison=None,
            message_type=message.type,
        )


class UnresolvedPage(_Body):
    older_than_s: int
    count: int = Field(description="How many items there are below (at most `limit`).")
    truncated: bool = Field(
        description="There may be more: a partition or the store had `limit` of its own."
    )
    items: list[UnresolvedOut] = Field(description="Oldest first.")


class QuarantineOut(_Body):
    """Items the pipeline gave up on, with their events as the inbox held them."""

    quarantine_id: str
    stage: str = Field(
        description="The step that failed: commit_turn, load_state, record_messages, on_status,"
        " status, delivery, or poison."
    )
    reason: str = Field(description='"permanent", "deadline", "not_served" or "poison".')
    error: str
    event_ids: list[str] = Field(description="The events' idempotency keys (wamids).")
    chat: str | None
    turn_id: str | None
    created_at: float
    replayed_at: float | None
    replayable: bool = Field(
        description="Whether `POST /api/quarantine/{id}/replay` would take it: not replayed yet,"
        " and not poison."
    )
    events: list[Any] = Field(
        description="The events as the inbox held them (for poison: the entry's raw fields)."
    )

    @classmethod
    def from_record(cls, record: QuarantineRecord) -> QuarantineOut:
        try:
            events = json.loads(record.events)
        except ValueError:
            events = [record.events]
        return cls(
            quarantine_id=record.quarantine_id,
            stage=record.stage,
            reason=record.reason,
            error=record.error,
            event_ids=list(record.event_ids),
            chat=record.chat,
            turn_id=record.turn_id,
            created_at=record.created_at,
            replayed_at=record.replayed_at,
            replayable=record.replayed_at is None and record.reason != "poison",
            events=events if isinstance(events, list) else [events],
        )


class QuarantinePage(_Body):
    quarantined: list[QuarantineOut] = Field(description="Newest first.")
    limit: int
    offset: int
    next_offset: int | None


class EngineLoadOut(_Body):
    running: int
    waiting: int
    capacity: int | None


class AgentLoadOut(_Body):
    """One agent's inference load, summed over its workers."""

    agent: str
    saturated: bool = Field(description="A new turn would wait for inference now.")
    running: int = Field(description="Turns running on the engine now.")
    waiting: int = Field(description="Turns queued for an inference slot (fair across chats).")
    waiting_chats: int
    capacity: int = Field(description="Turns the agent's workers run at once.")
    engine: EngineLoadOut | None = Field(
        description="What the engine itself reports (vLLM: requests running and queued)."
    )
    admitted: int
    waited: int = Field(description="Admitted turns that had to queue first.")
    max_wait_s: float
    fallback_turns: int = Field(description="Turns that ran on the fallback engine.")
    workers: int


class InferenceOut(_Body):
    agents: list[AgentLoadOut]
    notices_sent: int = Field(description='"One moment" messages sent to waiting users.')
    typing_refreshes: int


class FieldError(_Body):
    loc: list[str | int] = Field(description='Where: ["query", "limit"], ["body", "text"]...')
    msg: str
    type: str


class ErrorBody(_Body):
    """Every 4xx answer: a code, a sentence that says what is wrong, and for invalid requests
    the failing fields (FastAPI's `detail` list, without echoing the input back)."""

    error: str = Field(
        examples=["invalid_request"],
        description=(
            '"unauthorized", "forbidden", "invalid_request", "not_found", "outside_window",'
            ' "idempotency_conflict", "number_not_configured", "already_replayed",'
            ' "not_replayable" or (503) "inbox_unavailable".'
        ),
    )
    message: str
    detail: list[FieldError] | None = None
