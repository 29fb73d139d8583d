"""Read the type-specific part of an inbound message into its `message_content` model.

Tolerant throughout: a missing or ill-typed field becomes None (or its default), an unknown
`type` or `interactive.type` becomes UNKNOWN with the raw payload kept and a log line.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from whatsray.whatsapp.json_values import as_bool, as_dict, as_float, as_id, as_int, as_str
from whatsray.whatsapp.message_content import (
    AudioContent,
    ButtonContent,
    ContactAddress,
    ContactCard,
    ContactEmail,
    ContactOrg,
    ContactPhone,
    ContactsContent,
    ContactUrl,
    DocumentContent,
    EditContent,
    ImageContent,
    InteractiveContent,
    InteractiveType,
    LocationContent,
    MessageContent,
    MessageType,
    OrderContent,
    OrderItem,
    ReactionContent,
    RevokeContent,
    StickerContent,
    SystemContent,
    TextContent,
    UnknownContent,
    UnsupportedContent,
    VideoContent,
)

log = logging.getLogger(__name__)

_KNOWN_TYPES: dict[str, MessageType] = {
    t.value: t for t in MessageType if t is not MessageType.UNKNOWN
}
_KNOWN_INTERACTIVE: dict[str, InteractiveType] = {
    t.value: t for t in InteractiveType if t is not InteractiveType.UNKNOWN
}
# An edit's inner message is parsed as content too, but never an edit of an edit of ...
_MAX_EDIT_DEPTH = 1


def message_type(raw_type: str | None) -> MessageType:
    """The enum for `messages[].type`; UNKNOWN (logged) for anything else."""
    known = _KNOWN_TYPES.get(raw_type) if raw_type is not None else None
    if known is None:
        log.warning("unknown WhatsApp message type %r: kept raw as UNKNOWN", raw_type)
        return MessageType.UNKNOWN
    return known


def dicts(value: Any) -> list[dict[str, Any]]:
    """The objects in a JSON array; anything else in it (or a non-array) is dropped."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def read_content(message: dict[str, Any], depth: int = 0) -> tuple[MessageType, MessageContent]:
    """The type and content of a `messages[]` object (or of an edit's inner `message`)."""
    raw_type = as_str(message.get("type"))
    kind = message_type(raw_type)
    if kind is MessageType.EDIT and depth >= _MAX_EDIT_DEPTH:
        log.warning("edit nested in an edit: kept raw as UNKNOWN")
        kind = MessageType.UNKNOWN
    if kind is MessageType.UNKNOWN:
        payload = message.get(raw_type) if raw_type is not None else None
        return kind, UnknownContent(raw_type=raw_type, payload=payload)
    body = as_dict(message.get(kind.value))
    return kind, _read_known(kind, body, message, depth)


def _read_known(
    kind: MessageType, body: dict[str, Any], message: dict[str, Any], depth: int
) -> MessageContent:
    match kind:
        case MessageType.TEXT:
            return TextContent(body=as_str(body.get("body")) or "")
        case MessageType.IMAGE:
            return ImageContent(**_media(body), caption=as_str(body.get("caption")))
        case MessageType.VIDEO:
            return VideoContent(**_media(body), caption=as_str(body.get("caption")))
        case MessageType.AUDIO:
            return AudioContent(**_media(body), voice=as_bool(body.get("voice")) or False)
        case MessageType.DOCUMENT:
            return DocumentContent(
                **_media(body),
                caption=as_str(body.get("caption")),
                filename=as_str(body.get("filename")),
            )
        case MessageType.STICKER:
            return StickerContent(**_media(body), animated=as_bool(body.get("animated")) or False)
        case MessageType.LOCATION:
            return LocationContent(
                latitude=as_float(body.get("latitude")),
                longitude=as_float(body.get("longitude")),
                name=as_str(body.get("name")),
                address=as_str(body.get("address")),
                url=as_str(body.get("url")),
            )
        case MessageType.CONTACTS:
            # The only type whose payload is an array, not an object.
            return ContactsContent(
                contacts=tuple(_contact(c) for c in dicts(message.get("contacts")))
            )
        case MessageType.INTERACTIVE:
            return _interactive(body)
        case MessageType.BUTTON:
            return ButtonContent(payload=as_str(body.get("payload")), text=as_str(body.get("text")))
        case MessageType.REACTION:
            # An empty or missing emoji means the user removed the reaction.
            return ReactionContent(
                message_id=as_id(body.get("message_id")), emoji=as_str(body.get("emoji")) or None
            )
        case MessageType.ORDER:
            return OrderContent(
                catalog_id=as_id(body.get("catalog_id")),
                text=as_str(body.get("text")),
                product_items=tuple(_order_item(i) for i in dicts(body.get("product_items"))),
            )
        case MessageType.SYSTEM:
            return SystemContent(
                body=as_str(body.get("body")),
                system_type=as_str(body.get("type")),
                new_wa_id=as_id(body.get("wa_id")),
            )
        case MessageType.UNSUPPORTED:
            return UnsupportedContent(unsupported_type=as_str(body.get("type")))
        case MessageType.REVOKE:
            return RevokeContent(original_message_id=as_id(body.get("original_message_id")))
        case MessageType.EDIT:
            inner = body.get("message")
            return EditContent(
                original_message_id=as_id(body.get("original_message_id")),
                message=read_content(inner, depth + 1)[1] if isinstance(inner, dict) else None,
            )
        case _:  # pragma: no cover - every known type is matched above
            return UnknownContent(raw_type=kind.value, payload=body)


def _media(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "media_id": as_id(body.get("id")),
        "mime_type": as_str(body.get("mime_type")),
        "sha256": as_str(body.get("sha256")),
        "url": as_str(body.get("url")),
    }


def _contact(card: dict[str, Any]) -> ContactCard:
    name = as_dict(card.get("name"))
    org = card.get("org")
    return ContactCard(
        formatted_name=as_str(name.get("formatted_name")),
        first_name=as_str(name.get("first_name")),
        last_name=as_str(name.get("last_name")),
        middle_name=as_str(name.get("middle_name")),
        phones=tuple(
            ContactPhone(
                phone=as_str(p.get("phone")),
                wa_id=as_id(p.get("wa_id")),
                type=as_str(p.get("type")),
            )
            for p in dicts(card.get("phones"))
        ),
        emails=tuple(
            ContactEmail(email=as_str(e.get("email")), type=as_str(e.get("type")))
            for e in dicts(card.get("emails"))
        ),
        urls=tuple(
            ContactUrl(url=as_str(u.get("url")), type=as_str(u.get("type")))
            for u in dicts(card.get("urls"))
        ),
        addresses=tuple(
            ContactAddress(
                street=as_str(a.get("street")),
                city=as_str(a.get("city")),
                state=as_str(a.get("state")),
                zip=as_str(a.get("zip")),
                country=as_str(a.get("country")),
                country_code=as_str(a.get("country_code")),
                type=as_str(a.get("type")),
            )
            for a in dicts(card.get("addresses"))
        ),
        org=(
            ContactOrg(
                company=as_str(org.get("company")),
                department=as_str(org.get("department")),
                title=as_str(org.get("title")),
            )
            if isinstance(org, dict)
            else None
        ),
        birthday=as_str(card.get("birthday")),
    )


def _interactive(body: dict[str, Any]) -> InteractiveContent:
    raw_type = as_str(body.get("type"))
    kind = _KNOWN_INTERACTIVE.get(raw_type) if raw_type is not None else None
    if kind is None:
        log.warning("unknown interactive reply type %r: kept raw as UNKNOWN", raw_type)
        return InteractiveContent(raw_interactive_type=raw_type, raw=body)
    reply = as_dict(body.get(kind.value))
    if kind is InteractiveType.NFM_REPLY:
        decoded, raw_json = _flow_response(reply.get("response_json"))
        return InteractiveContent(
            interactive_type=kind,
            raw_interactive_type=raw_type,
            flow_name=as_str(reply.get("name")),
            flow_body=as_str(reply.get("body")),
            response_json=decoded,
            response_json_raw=raw_json,
            raw=body,
        )
    return InteractiveContent(
        interactive_type=kind,
        raw_interactive_type=raw_type,
        reply_id=as_str(reply.get("id")),
        title=as_str(reply.get("title")),
        description=as_str(reply.get("description")),
        raw=body,
    )


def _flow_response(value: Any) -> tuple[dict[str, Any] | None, str | None]:
    """Decode a Flow's `response_json` string; None (logged) when it is not a JSON object."""
    if isinstance(value, dict):  # tolerate a payload that already holds the object
        return value, None
    if not isinstance(value, str):
        return None, None
    try:
        decoded = json.loads(value)
    except (ValueError, RecursionError):
        decoded = None
    if not isinstance(decoded, dict):
        log.warning("nfm_reply response_json is not a JSON object: kept as a string")
        return None, value
    return decoded, value


def _order_item(item: dict[str, Any]) -> OrderItem:
    return OrderItem(
        product_retailer_id=as_id(item.get("product_retailer_id")),
        quantity=as_int(item.get("quantity")),
        item_price=as_float(item.get("item_price")),
        currency=as_str(item.get("currency")),
    )
