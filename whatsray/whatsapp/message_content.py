"""What an inbound message carries: one frozen model per WhatsApp message type.

Shapes follow Meta's webhook reference (reference section 3b). Every model is tolerant: fields Meta
may leave out are optional, and `UnknownContent` holds whatever a type we do not know yet carried.
`content_text` gives the words a user typed or tapped, whatever the type.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class MessageType(StrEnum):
    """`messages[].type`. Types Meta adds later become `UNKNOWN` (the raw string is kept)."""

    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    VIDEO = "video"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACTS = "contacts"
    INTERACTIVE = "interactive"
    BUTTON = "button"
    REACTION = "reaction"
    ORDER = "order"
    SYSTEM = "system"
    UNSUPPORTED = "unsupported"
    REVOKE = "revoke"
    EDIT = "edit"
    UNKNOWN = "unknown"


class InteractiveType(StrEnum):
    """`interactive.type` on a reply to an interactive message."""

    BUTTON_REPLY = "button_reply"
    LIST_REPLY = "list_reply"
    NFM_REPLY = "nfm_reply"  # a completed WhatsApp Flow
    UNKNOWN = "unknown"


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True)


class TextContent(_Value):
    type: Literal[MessageType.TEXT] = MessageType.TEXT
    body: str = ""


class MediaContent(_Value):
    """Fields every media type shares. `media_id` downloads for 7 days; `url` needs the token."""

    media_id: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    url: str | None = None


class ImageContent(MediaContent):
    type: Literal[MessageType.IMAGE] = MessageType.IMAGE
    caption: str | None = None


class VideoContent(MediaContent):
    type: Literal[MessageType.VIDEO] = MessageType.VIDEO
    caption: str | None = None


class AudioContent(MediaContent):
    type: Literal[MessageType.AUDIO] = MessageType.AUDIO
    voice: bool = False  # True for a voice note recorded in the chat


class DocumentContent(MediaContent):
    type: Literal[MessageType.DOCUMENT] = MessageType.DOCUMENT
    caption: str | None = None
    filename: str | None = None


class StickerContent(MediaContent):
    type: Literal[MessageType.STICKER] = MessageType.STICKER
    animated: bool = False


class LocationContent(_Value):
    type: Literal[MessageType.LOCATION] = MessageType.LOCATION
    latitude: float | None = None
    longitude: float | None = None
    name: str | None = None
    address: str | None = None
    url: str | None = None


class ContactPhone(_Value):
    phone: str | None = None
    wa_id: str | None = None
    type: str | None = None


class ContactEmail(_Value):
    email: str | None = None
    type: str | None = None


class ContactUrl(_Value):
    url: str | None = None
    type: str | None = None


class ContactAddress(_Value):
    street: str | None = None
    city: str | None = None
    state: str | None = None
    zip: str | None = None
    country: str | None = None
    country_code: str | None = None
    type: str | None = None


class ContactOrg(_Value):
    company: str | None = None
    department: str | None = None
    title: str | None = None


class ContactCard(_Value):
    """One shared contact (vCard-like)."""

    formatted_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    middle_name: str | None = None
    phones: tuple[ContactPhone, ...] = ()
    emails: tuple[ContactEmail, ...] = ()
    urls: tuple[ContactUrl, ...] = ()
    addresses: tuple[ContactAddress, ...] = ()
    org: ContactOrg | None = None
    birthday: str | None = None


class ContactsContent(_Value):
    type: Literal[MessageType.CONTACTS] = MessageType.CONTACTS
    contacts: tuple[ContactCard, ...] = ()


class InteractiveContent(_Value):
    """A tap on a reply button or list row, or a completed Flow (`nfm_reply`)."""

    type: Literal[MessageType.INTERACTIVE] = MessageType.INTERACTIVE
    interactive_type: InteractiveType = InteractiveType.UNKNOWN
    raw_interactive_type: str | None = None
    reply_id: str | None = None  # the id you gave the button or row
    title: str | None = None
    description: str | None = None
    flow_name: str | None = None
    flow_body: str | None = None
    # Meta sends the Flow's answers as a JSON *string*; decoded here, None when it is not an object.
    response_json: dict[str, Any] | None = None
    response_json_raw: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict)


class ButtonContent(_Value):
    """A quick-reply button on a template message was tapped."""

    type: Literal[MessageType.BUTTON] = MessageType.BUTTON
    payload: str | None = None
    text: str | None = None


class ReactionContent(_Value):
    type: Literal[MessageType.REACTION] = MessageType.REACTION
    message_id: str | None = None  # the wamid reacted to
    emoji: str | None = None  # None: the reaction was removed

    @property
    def removed(self) -> bool:
        return self.emoji is None


class OrderItem(_Value):
    product_retailer_id: str | None = None
    quantity: int | None = None
    item_price: float | None = None
    currency: str | None = None


class OrderContent(_Value):
    type: Literal[MessageType.ORDER] = MessageType.ORDER
    catalog_id: str | None = None
    text: str | None = None
    product_items: tuple[OrderItem, ...] = ()


class SystemContent(_Value):
    """A notice from WhatsApp, e.g. `user_changed_number` (with the new `wa_id`)."""

    type: Literal[MessageType.SYSTEM] = MessageType.SYSTEM
    body: str | None = None
    system_type: str | None = None
    new_wa_id: str | None = None


class UnsupportedContent(_Value):
    """A message the Cloud API cannot deliver to businesses; the reason is in the event's errors."""

    type: Literal[MessageType.UNSUPPORTED] = MessageType.UNSUPPORTED
    unsupported_type: str | None = None


class RevokeContent(_Value):
    """The user deleted one of their messages."""

    type: Literal[MessageType.REVOKE] = MessageType.REVOKE
    original_message_id: str | None = None


class EditContent(_Value):
    """The user edited one of their messages; `message` is the new content."""

    type: Literal[MessageType.EDIT] = MessageType.EDIT
    original_message_id: str | None = None
    message: MessageContent | None = None


class UnknownContent(_Value):
    """A type this version does not know. `payload` is the object Meta sent under that type."""

    type: Literal[MessageType.UNKNOWN] = MessageType.UNKNOWN
    raw_type: str | None = None
    payload: Any = None


MessageContent = Annotated[
    TextContent
    | ImageContent
    | VideoContent
    | AudioContent
    | DocumentContent
    | StickerContent
    | LocationContent
    | ContactsContent
    | InteractiveContent
    | ButtonContent
    | ReactionContent
    | OrderContent
    | SystemContent
    | UnsupportedContent
    | RevokeContent
    | EditContent
    | UnknownContent,
    Field(discriminator="type"),
]

EditContent.model_rebuild()


def content_text(content: MessageContent | None) -> str | None:
    """The words the user wrote or tapped: a text body, a caption, a button or row title..."""
    match content:
        case TextContent():
            return content.body
        case ImageContent() | VideoContent() | DocumentContent():
            return content.caption
        case InteractiveContent():
            return content.title
        case ButtonContent():
            return content.text
        case OrderContent():
            return content.text
        case EditContent():
            return content_text(content.message)
        case _:
            return None
