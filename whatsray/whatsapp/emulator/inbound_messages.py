"""Turn the control API's message description into the Meta message object a user would send.

Two forms are accepted for every type: the short form (`{"type": "text", "text": "hi"}`,
`{"type": "image", "media_id": "...", "caption": "..."}`, `{"type": "button_reply", "id", "title"}`)
and Meta's own form (`{"type": "image", "image": {"id": "..."}}`), which also lets a test send any
type the emulator has no short form for (contacts, order, system, unsupported...).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from whatsray.whatsapp.emulator.state import MediaItem

MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
_ENVELOPE_KEYS = {"type", "context", "referral", "errors"}


class InboundMessageError(ValueError):
    """The control API's message description is not valid; answered with HTTP 400."""


def _fields(message: dict[str, Any], key: str) -> dict[str, Any]:
    """The type's object: `message[key]` in Meta's form, else the short form's own keys."""
    nested = message.get(key)
    if isinstance(nested, dict):
        return dict(nested)
    return {k: v for k, v in message.items() if k not in _ENVELOPE_KEYS and k != key}


def _require(fields: dict[str, Any], *names: str, what: str) -> None:
    missing = [name for name in names if fields.get(name) in (None, "")]
    if missing:
        raise InboundMessageError(f"{what} message needs {', '.join(missing)}")


def _text(message: dict[str, Any]) -> dict[str, Any]:
    text = message.get("text", message.get("body"))
    if isinstance(text, dict):
        text = text.get("body")
    if not isinstance(text, str) or not text:
        raise InboundMessageError("text message needs a non-empty text")
    return {"body": text}


def _media(
    kind: str, message: dict[str, Any], lookup: Callable[[str], MediaItem | None]
) -> dict[str, Any]:
    fields = _fields(message, kind)
    media_id = fields.pop("media_id", None) or fields.get("id")
    if not isinstance(media_id, str) or not media_id:
        raise InboundMessageError(f"{kind} message needs a media_id (upload the file first)")
    item = lookup(media_id)
    if item is None:
        raise InboundMessageError(f"unknown media id {media_id!r}: upload it first")
    body: dict[str, Any] = {
        "id": media_id,
        "mime_type": fields.get("mime_type") or item.mime_type,
        # Webhooks carry the digest base64-encoded; GET /{media_id} gives it in hex.
        "sha256": fields.get("sha256") or base64.b64encode(item.digest).decode(),
    }
    if fields.get("caption") and kind in ("image", "video", "document"):
        body["caption"] = fields["caption"]
    if kind == "document":
        body["filename"] = fields.get("filename") or item.filename or "document"
    if kind == "audio":
        body["voice"] = bool(fields.get("voice", False))
    if kind == "sticker":
        body["animated"] = bool(fields.get("animated", False))
    return body


def _interactive_reply(kind: str, message: dict[str, Any]) -> dict[str, Any]:
    fields = _fields(message, kind)
    _require(fields, "id", "title", what=kind)
    reply = {"id": str(fields["id"]), "title": str(fields["title"])}
    if kind == "list_reply" and fields.get("description"):
        reply["description"] = str(fields["description"])
    return {"type": kind, kind: reply}


def _context(message: dict[str, Any], business_number: str, default_id: str | None) -> Any:
    context = message.get("context")
    if context is None:
        return {"from": business_number, "id": default_id} if default_id else None
    if not isinstance(context, dict):
        raise InboundMessageError("context must be an object")
    out: dict[str, Any] = {}
    quoted = context.get("message_id") or context.get("id")
    if quoted:
        out = {"from": context.get("from", business_number), "id": quoted}
    for flag in ("forwarded", "frequently_forwarded"):
        if context.get(flag):
            out[flag] = True
    return out or None


def to_meta_message(
    message: Any,
    *,
    media: Callable[[str], MediaItem | None],
    business_number: str,
    last_interactive_wamid: str | None = None,
) -> dict[str, Any]:
    """The Meta message object, without `from`, `id` and `timestamp` (the caller adds them)."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise InboundMessageError("message must be an object with a string 'type'")
    kind: str = message["type"]
    default_context: str | None = None
    body: dict[str, Any]
    if kind == "text":
        body = {"type": "text", "text": _text(message)}
    elif kind in MEDIA_TYPES:
        body = {"type": kind, kind: _media(kind, message, media)}
    elif kind == "location":
        fields = _fields(message, "location")
        _require(fields, "latitude", "longitude", what="location")
        body = {"type": "location", "location": fields}
    elif kind == "reaction":
        fields = _fields(message, "reaction")
        _require(fields, "message_id", what="reaction")
        # An empty emoji is Meta's "reaction removed".
        body = {"type": "reaction", "reaction": {**fields, "emoji": fields.get("emoji", "")}}
    elif kind in ("button_reply", "list_reply"):
        body = {"type": "interactive", "interactive": _interactive_reply(kind, message)}
        default_context = last_interactive_wamid
    elif kind == "button":
        fields = _fields(message, "button")
        _require(fields, "payload", "text", what="button")
        body = {"type": "button", "button": fields}
        default_context = last_interactive_wamid
    elif kind in message:
        body = {"type": kind, kind: message[kind]}
        if kind == "interactive":
            default_context = last_interactive_wamid
    else:
        raise InboundMessageError(
            f"no short form for type {kind!r}: give Meta's form, {{'type': {kind!r}, "
            f"{kind!r}: {{...}}}}"
        )
    context = _context(message, business_number, default_context)
    if context:
        body["context"] = context
    for extra in ("referral", "errors"):
        if extra in message:
            body[extra] = message[extra]
    return body
