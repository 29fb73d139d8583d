"""Typed webhook events: what `parse_webhook` returns.

Four kinds, told apart by the `kind` literal: `message` (a user wrote), `status` (what happened to a
message the business sent), `error` (a value-level `errors[]` entry) and `other` (any other webhook
`field`: template, account, call, preference, echo and history updates, kept raw).

Every event carries an `idempotency_key` (dedupe on it: Meta delivers at least once) and, where
one can be told, a `ChatKey` naming the conversation. Events are frozen pydantic models: cheap to
pickle, and `TypeAdapter(Event)` round-trips them through JSON.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from whatsray.whatsapp.errors import MetaApiError, error_from_meta
from whatsray.whatsapp.message_content import (
    InteractiveType,
    MessageContent,
    MessageType,
    content_text,
)

__all__ = [
    "ChatKey",
    "Conversation",
    "ErrorEvent",
    "Event",
    "EventKind",
    "InteractiveType",
    "MessageContext",
    "MessageEvent",
    "MessageType",
    "OtherEvent",
    "Pricing",
    "Referral",
    "StatusEvent",
    "StatusValue",
    "WebhookError",
]

EventKind = Literal["message", "status", "error", "other"]


class ChatKey(BaseModel):
    """One conversation: the business number and the user.

    `user` is the business-scoped user id (BSUID, e.g. `US.13491208655302741918`) when Meta sends
    one, else the phone number: BSUIDs are the stable id going forward and username users may have
    no phone number at all. The canonical string is `"{phone_number_id}:{user}"`.
    """

    model_config = ConfigDict(frozen=True)

    phone_number_id: str
    user: str

    @field_validator("phone_number_id")
    @classmethod
    def _no_colon(cls, value: str) -> str:
        # The first ':' separates the parts of the canonical string, so it cannot be in this one.
        if not value or ":" in value:
            raise ValueError("phone_number_id must be non-empty and contain no ':'")
        return value

    @field_validator("user")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value:
            raise ValueError("user must be non-empty")
        return value

    def __str__(self) -> str:
        return f"{self.phone_number_id}:{self.user}"

    @classmethod
    def parse(cls, text: str) -> ChatKey:
        """Inverse of `str()`. Raises `ValueError` for a string that is not a chat key."""
        phone_number_id, sep, user = text.partition(":")
        if not sep:
            raise ValueError(f"not a chat key (no ':'): {text!r}")
        return cls(phone_number_id=phone_number_id, user=user)


class StatusValue(StrEnum):
    """`statuses[].status`. `delivered` may be skipped; `failed` is terminal."""

    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"  # first play of a voice message
    FAILED = "failed"
    UNKNOWN = "unknown"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True)


class WebhookError(_Value):
    """An `errors[]` entry on a message, a status or a change value."""

    code: int | None = None
    title: str | None = None
    message: str | None = None
    details: str | None = None  # error_data.details
    href: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)

    def to_exception(self) -> MetaApiError:
        """The typed error for this code (the same classes the Graph client raises)."""
        return error_from_meta({**self.raw, "code": self.code})


class MessageContext(_Value):
    """`messages[].context`: a quoted reply, or forwarding flags."""

    quoted_message_id: str | None = None  # context.id; for button replies, your message's wamid
    quoted_from: str | None = None  # context.from
    forwarded: bool = False
    frequently_forwarded: bool = False
    referred_product_catalog_id: str | None = None
    referred_product_retailer_id: str | None = None

    @property
    def is_reply(self) -> bool:
        return self.quoted_message_id is not None


class Referral(_Value):
    """`messages[].referral`: the user came from a Click-to-WhatsApp ad or post."""

    source_url: str | None = None
    source_id: str | None = None
    source_type: str | None = None
    headline: str | None = None
    body: str | None = None
    media_type: str | None = None
    image_url: str | None = None
    video_url: str | None = None
    thumbnail_url: str | None = None
    ctwa_clid: str | None = None


class Pricing(_Value):
    billable: bool | None = None
    pricing_model: str | None = None  # "PMP" (per message); "CBP" before 2025-07-01
    type: str | None = None  # "regular", "free_customer_service", "free_entry_point"
    category: str | None = None


class Conversation(_Value):
    id: str | None = None
    origin_type: str | None = None
    expiration_timestamp: datetime | None = None


class _Event(_Value):
    idempotency_key: str
    chat: ChatKey | None = None
    waba_id: str | None = None  # entry[].id
    phone_number_id: str | None = None  # value.metadata.phone_number_id
    display_phone_number: str | None = None
    timestamp: datetime | None = None  # aware, UTC

    def _summary_head(self, kind: str, type_: Any) -> dict[str, Any]:
        return {
            "kind": kind,
            "id": self.idempotency_key,
            "chat": str(self.chat) if self.chat is not None else None,
            "type": type_,
            "timestamp": self.timestamp.isoformat() if self.timestamp is not None else None,
        }


class MessageEvent(_Event):
    """An inbound message from a user."""

    kind: Literal["message"] = "message"
    message_id: str | None = None  # the wamid
    type: MessageType
    raw_type: str | None = None
    content: MessageContent
    from_phone: str | None = None  # `from` / contacts[].wa_id; may be absent for username users
    from_user_id: str | None = None  # BSUID: `from_user_id` / contacts[].user_id
    parent_user_id: str | None = None
    profile_name: str | None = None
    context: MessageContext | None = None
    referral: Referral | None = None
    errors: tuple[WebhookError, ...] = ()
    raw: dict[str, Any] = Field(default_factory=dict)

    @property
    def text(self) -> str | None:
        """The words the user wrote or tapped (text, caption, button or row title, edit...)."""
        return content_text(self.content)

    @property
    def user(self) -> str | None:
        """The user part of the chat key: BSUID when known, else the phone number."""
        return self.from_user_id or self.from_phone

    def summary(self) -> dict[str, Any]:
        out = self._summary_head(self.kind, self.type.value)
        if self.type is MessageType.UNKNOWN:
            out["raw_type"] = self.raw_type
        if self.profile_name is not None:
            out["name"] = self.profile_name
        text = self.text
        if text is not None:
            out["text"] = text
        if self.errors:
            out["error_codes"] = [e.code for e in self.errors]
        return out


class StatusEvent(_Event):
    """What happened to a message the business sent."""

    kind: Literal["status"] = "status"
    message_id: str | None = None  # the wamid you sent
    status: StatusValue
    raw_status: str | None = None
    recipient_id: str | None = None  # phone, or the group id for group messages
    recipient_user_id: str | None = None  # BSUID
    recipient_type: str | None = None  # "individual" | "group"
    recipient_participant_id: str | None = None  # the group member, for group messages
    biz_opaque_callback_data: str | None = None
    pricing: Pricing | None = None
    conversation: Conversation | None = None
    errors: tuple[WebhookError, ...] = ()
    raw: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_group(self) -> bool:
        return self.recipient_type == "group"

    def summary(self) -> dict[str, Any]:
        out = self._summary_head(self.kind, self.status.value)
        if self.status is StatusValue.UNKNOWN:
            out["raw_type"] = self.raw_status
        out["message_id"] = self.message_id
        if self.errors:
            out["error_codes"] = [e.code for e in self.errors]
        return out


class ErrorEvent(_Event):
    """A value-level `errors[]` entry: Meta could not deliver (part of) an update."""

    kind: Literal["error"] = "error"
    field: str | None = None
    error: WebhookError
    raw: dict[str, Any] = Field(default_factory=dict)

    @property
    def code(self) -> int | None:
        return self.error.code

    def summary(self) -> dict[str, Any]:
        out = self._summary_head(self.kind, self.error.code)
        out["title"] = self.error.title
        if self.error.details is not None:
            out["details"] = self.error.details
        return out


class OtherEvent(_Event):
    """Any other webhook `field` (`account_update`, `calls`, `history`...), its value kept raw."""

    kind: Literal["other"] = "other"
    field: str | None = None
    raw: Any = None  # the change's `value`, as received

    @property
    def value(self) -> Any:
        return self.raw

    @property
    def event_name(self) -> str | None:
        """`value.event` where the field has one (account and template updates)."""
        event = self.raw.get("event") if isinstance(self.raw, dict) else None
        return event if isinstance(event, str) else None

    def summary(self) -> dict[str, Any]:
        out = self._summary_head(self.kind, self.field)
        if self.event_name is not None:
            out["event"] = self.event_name
        return out


Event = Annotated[MessageEvent | StatusEvent | ErrorEvent | OtherEvent, Field(discriminator="kind")]
