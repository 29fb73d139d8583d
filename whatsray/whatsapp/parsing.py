"""`parse_webhook`: a raw webhook body in, typed events out, in the order Meta sent them.

One POST may batch many entries, changes, messages and statuses; every one becomes an event.
Malformed JSON (or JSON nested deeper than `MAX_DEPTH`) is the only thing that raises
(`InvalidWebhookPayload`, the ingress answers 400).
Anything else odd in a well-formed body (not an object, missing keys, wrong types, types Meta added
after this was written) is logged and skipped or kept raw: Meta retries a refused body for 7 days,
so refusing a body we merely fail to understand would only delay it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any, NoReturn

from pydantic import ValidationError

from whatsray.whatsapp.content_parsing import dicts, read_content
from whatsray.whatsapp.errors import InvalidWebhookPayload
from whatsray.whatsapp.events import (
    ChatKey,
    Conversation,
    ErrorEvent,
    Event,
    MessageContext,
    MessageEvent,
    OtherEvent,
    Pricing,
    Referral,
    StatusEvent,
    StatusValue,
    WebhookError,
)
from whatsray.whatsapp.json_values import (
    as_bool,
    as_dict,
    as_id,
    as_int,
    as_str,
    as_timestamp,
    content_digest,
)

log = logging.getLogger(__name__)

__all__ = ["ECHOES_FIELD", "parse_webhook"]

_KNOWN_STATUSES: dict[str, StatusValue] = {
    s.value: s for s in StatusValue if s is not StatusValue.UNKNOWN
}
_MESSAGES_FIELD = "messages"
ECHOES_FIELD = "smb_message_echoes"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
# Meta's payloads nest about 8 levels deep. An event (and the inbox entry, the store row made
# from it) carries its part of the body, and serializers give up around 250 levels: a deeper
# body would be accepted by the parser and then fail to be stored (a 500, retried for 7 days).
MAX_DEPTH = 64


def parse_webhook(raw_body: bytes) -> list[Event]:
    """Every update in a webhook body, as typed events, in order.

    Raises `InvalidWebhookPayload` only when the body is not UTF-8 JSON, or nests deeper than
    `MAX_DEPTH`.
    """
    document = _decode(raw_body)
    if _deeper_than(document, MAX_DEPTH):
        raise InvalidWebhookPayload(f"webhook body is nested too deeply (over {MAX_DEPTH} levels)")
    try:
        return _parse_document(document)
    except RecursionError:
        # Only a body nested far deeper than any real webhook gets here.
        raise InvalidWebhookPayload("webhook body is nested too deeply") from None


def _decode(raw_body: bytes) -> Any:
    try:
        text = raw_body.decode("utf-8")
        document = json.loads(text, parse_constant=_reject_constant)
        # Only a \uD8xx-\uDFxx escape can put a surrogate in a decoded string (strict UTF-8 cannot).
        return _scrub_surrogates(document) if "\\ud" in text or "\\uD" in text else document
    except UnicodeDecodeError as exc:
        raise InvalidWebhookPayload(f"webhook body is not UTF-8: {exc}") from None
    except ValueError as exc:
        raise InvalidWebhookPayload(f"webhook body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidWebhookPayload("webhook body is nested too deeply") from None


def _deeper_than(document: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels (iterative: no recursion)."""
    level: list[Any] = [document]
    for _ in range(limit):
        level = [
            child
            for node in level
            if isinstance(node, dict | list)
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def _scrub_surrogates(value: Any) -> Any:
    """Replace lone UTF-16 surrogates (legal as JSON escapes, never text) with U+FFFD.

    json.loads joins escaped surrogate *pairs* (Meta's emoji) into one character, so whatever is
    left is unpaired, and would make every later UTF-8 encode (Redis, DuckDB, JSON) fail.
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_scrub_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {_scrub_surrogates(k): _scrub_surrogates(v) for k, v in value.items()}
    return value


def _reject_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON (RFC 8259), though Python's decoder accepts them by default.
    raise ValueError(f"{name} is not valid JSON")


@dataclass(frozen=True, slots=True)
class _Change:
    """What every event from one `changes[]` item shares."""

    waba_id: str | None
    field: str | None
    phone_number_id: str | None
    display_phone_number: str | None
    contacts: list[dict[str, Any]]

    def chat(self, user: str | None) -> ChatKey | None:
        if self.phone_number_id is None or user is None:
            return None
        try:
            return ChatKey(phone_number_id=self.phone_number_id, user=user)
        except ValidationError:
            log.warning("cannot build a chat key from phone_number_id %r", self.phone_number_id)
            return None

    def single_contact_user(self) -> str | None:
        """The BSUID or phone of the only contact, for updates that name no user themselves."""
        if len(self.contacts) != 1:
            return None
        contact = self.contacts[0]
        return as_id(contact.get("user_id")) or as_id(contact.get("wa_id"))


def _parse_document(document: Any) -> list[Event]:
    if not isinstance(document, dict):
        log.warning("webhook body is JSON but not an object (%s): ignored", type(document).__name__)
        return []
    if document.get("object") != "whatsapp_business_account":
        log.warning("webhook object is %r, not whatsapp_business_account", document.get("object"))
    entries = document.get("entry")
    if not isinstance(entries, list):
        log.warning("webhook body has no entry[] list: ignored")
        return []
    events: list[Event] = []
    for entry in entries:
        if not isinstance(entry, dict):
            log.warning("webhook entry is not an object: skipped")
            continue
        changes = entry.get("changes")
        if not isinstance(changes, list):
            log.warning("webhook entry %r has no changes[] list: skipped", entry.get("id"))
            continue
        waba_id = as_id(entry.get("id"))
        for change in changes:
            if not isinstance(change, dict):
                log.warning("webhook change is not an object: skipped")
                continue
            events.extend(_parse_change(waba_id, change))
    return events


def _parse_change(waba_id: str | None, change: dict[str, Any]) -> list[Event]:
    field = as_str(change.get("field"))
    value = change.get("value")
    metadata = as_dict(value.get("metadata")) if isinstance(value, dict) else {}
    shared = _Change(
        waba_id=waba_id,
        field=field,
        phone_number_id=as_id(metadata.get("phone_number_id")),
        display_phone_number=as_str(metadata.get("display_phone_number")),
        contacts=dicts(value.get("contacts")) if isinstance(value, dict) else [],
    )
    if field == _MESSAGES_FIELD and isinstance(value, dict):
        events = _parse_messages_value(shared, value)
        if events is not None:
            return events
        log.warning("messages change with no messages, statuses or errors: kept raw")
    elif field == ECHOES_FIELD and isinstance(value, dict):
        echoes = _echo_events(shared, value)
        if echoes:
            return echoes
    elif field is None:
        log.warning("webhook change has no field name: kept raw")
    return [_other_event(shared, value)]


def _parse_messages_value(change: _Change, value: dict[str, Any]) -> list[Event] | None:
    """Events of a `messages` change, in the order its arrays appear; None if it has none."""
    if change.phone_number_id is None:
        log.warning("messages change without metadata.phone_number_id: events have no chat key")
    events: list[Event] = []
    found = False
    for key, items in value.items():  # dicts keep the JSON's key order
        if key not in ("messages", "statuses", "errors"):
            continue
        found = True
        if not isinstance(items, list):
            log.warning("value.%s is not a list: skipped", key)
            continue
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                log.warning("value.%s[%d] is not an object: skipped", key, index)
            elif key == "messages":
                events.append(_message_event(change, item))
            elif key == "statuses":
                events.append(_status_event(change, item))
            else:
                events.append(_error_event(change, value, index, item))
    return events if found else None


def _message_event(change: _Change, message: dict[str, Any]) -> MessageEvent:
    message_type, content = read_content(message)
    from_phone = as_id(message.get("from"))
    from_user_id = as_id(message.get("from_user_id"))
    contact = _sender_contact(change.contacts, from_phone, from_user_id)
    from_phone = from_phone or as_id(contact.get("wa_id"))
    from_user_id = from_user_id or as_id(contact.get("user_id"))
    message_id = as_id(message.get("id"))
    if message_id is None:
        log.warning("message without an id: keyed on a digest of its content")
    return MessageEvent(
        idempotency_key=message_id
        or "message:" + content_digest(change.waba_id, change.phone_number_id, message),
        chat=change.chat(from_user_id or from_phone),
        waba_id=change.waba_id,
        phone_number_id=change.phone_number_id,
        display_phone_number=change.display_phone_number,
        timestamp=as_timestamp(message.get("timestamp")),
        message_id=message_id,
        type=message_type,
        raw_type=as_str(message.get("type")),
        content=content,
        from_phone=from_phone,
        from_user_id=from_user_id,
        parent_user_id=as_id(contact.get("parent_user_id")),
        profile_name=as_str(as_dict(contact.get("profile")).get("name")),
        context=_context(message.get("context")),
        referral=_referral(message.get("referral")),
        errors=_errors(message.get("errors")),
        raw=message,
    )


def _sender_contact(
    contacts: list[dict[str, Any]], phone: str | None, user_id: str | None
) -> dict[str, Any]:
    """The `contacts[]` entry for the sender: matched on BSUID or phone, else the only one."""
    for contact in contacts:
        if user_id is not None and as_id(contact.get("user_id")) == user_id:
            return contact
        if phone is not None and as_id(contact.get("wa_id")) == phone:
            return contact
    if len(contacts) == 1:
        contact = contacts[0]
        contact_phone, contact_user = as_id(contact.get("wa_id")), as_id(contact.get("user_id"))
        # Only when nothing contradicts it: a contact with another phone is someone else.
        if (phone is None or contact_phone is None) and (user_id is None or contact_user is None):
            return contact
    return {}


def _status_event(change: _Change, status: dict[str, Any]) -> StatusEvent:
    message_id = as_id(status.get("id"))
    raw_status = as_str(status.get("status"))
    value = _KNOWN_STATUSES.get(raw_status) if raw_status is not None else None
    if value is None:
        log.warning("unknown status %r for %r: kept raw as UNKNOWN", raw_status, message_id)
        value = StatusValue.UNKNOWN
    if message_id is not None:
        key = f"{message_id}:{raw_status if raw_status is not None else value.value}"
    else:
        log.warning("status without a message id: keyed on a digest of its content")
        key = "status:" + content_digest(change.waba_id, change.phone_number_id, status)
    recipient_id = as_id(status.get("recipient_id"))
    recipient_user_id = as_id(status.get("recipient_user_id"))
    return StatusEvent(
        idempotency_key=key,
        chat=change.chat(recipient_user_id or recipient_id),
        waba_id=change.waba_id,
        phone_number_id=change.phone_number_id,
        display_phone_number=change.display_phone_number,
        timestamp=as_timestamp(status.get("timestamp")),
        message_id=message_id,
        status=value,
        raw_status=raw_status,
        recipient_id=recipient_id,
        recipient_user_id=recipient_user_id,
        recipient_type=as_str(status.get("recipient_type")),
        recipient_participant_id=as_id(status.get("recipient_participant_id")),
        biz_opaque_callback_data=as_str(status.get("biz_opaque_callback_data")),
        pricing=_pricing(status.get("pricing")),
        conversation=_conversation(status.get("conversation")),
        errors=_errors(status.get("errors")),
        raw=status,
    )


def _error_event(
    change: _Change, value: dict[str, Any], index: int, error: dict[str, Any]
) -> ErrorEvent:
    # Errors carry no id or timestamp: key on the whole value (its messages carry both) + position.
    digest = content_digest(change.waba_id, change.field, value, index)
    return ErrorEvent(
        idempotency_key="error:" + digest,
        chat=change.chat(change.single_contact_user()),
        waba_id=change.waba_id,
        phone_number_id=change.phone_number_id,
        display_phone_number=change.display_phone_number,
        field=change.field,
        error=_error(error),
        raw=error,
    )


def _echo_events(change: _Change, value: dict[str, Any]) -> list[Event]:
    """`smb_message_echoes`: messages the business sent from the WhatsApp Business app. One
    event per echo, in the chat of its recipient (so the chat's session sees it in order), keyed
    on its wamid; `raw` is the change's value with only that echo in `message_echoes`."""
    events: list[Event] = []
    for echo in dicts(value.get("message_echoes")):
        to = as_id(echo.get("to_user_id")) or as_id(echo.get("to"))
        wamid = as_id(echo.get("id"))
        single = {**value, "message_echoes": [echo]}
        key = f"echo:{wamid}" if wamid else "other:" + content_digest(change.waba_id, single)
        events.append(
            OtherEvent(
                idempotency_key=key,
                chat=change.chat(to),
                waba_id=change.waba_id,
                phone_number_id=change.phone_number_id,
                display_phone_number=change.display_phone_number,
                timestamp=as_timestamp(echo.get("timestamp")),
                field=change.field,
                raw=single,
            )
        )
    return events


def _other_event(change: _Change, value: Any) -> OtherEvent:
    timestamp = as_timestamp(value.get("timestamp")) if isinstance(value, dict) else None
    return OtherEvent(
        idempotency_key="other:" + content_digest(change.waba_id, change.field, value),
        chat=change.chat(change.single_contact_user()),
        waba_id=change.waba_id,
        phone_number_id=change.phone_number_id,
        display_phone_number=change.display_phone_number,
        timestamp=timestamp,
        field=change.field,
        raw=value,
    )


def _error(error: dict[str, Any]) -> WebhookError:
    return WebhookError(
        code=as_int(error.get("code")),
        title=as_str(error.get("title")),
        message=as_str(error.get("message")),
        details=as_str(as_dict(error.get("error_data")).get("details")),
        href=as_str(error.get("href")),
        raw=error,
    )


def _errors(value: Any) -> tuple[WebhookError, ...]:
    return tuple(_error(e) for e in dicts(value))


def _context(value: Any) -> MessageContext | None:
    if not isinstance(value, dict):
        return None
    product = as_dict(value.get("referred_product"))
    return MessageContext(
        quoted_message_id=as_id(value.get("id")),
        quoted_from=as_id(value.get("from")),
        forwarded=as_bool(value.get("forwarded")) or False,
        frequently_forwarded=as_bool(value.get("frequently_forwarded")) or False,
        referred_product_catalog_id=as_id(product.get("catalog_id")),
        referred_product_retailer_id=as_id(product.get("product_retailer_id")),
    )


def _referral(value: Any) -> Referral | None:
    if not isinstance(value, dict):
        return None
    # Every Referral field is a string named as in Meta's payload.
    return Referral(**{name: as_str(value.get(name)) for name in Referral.model_fields})


def _pricing(value: Any) -> Pricing | None:
    if not isinstance(value, dict):
        return None
    return Pricing(
        billable=as_bool(value.get("billable")),
        pricing_model=as_str(value.get("pricing_model")),
        type=as_str(value.get("type")),
        category=as_str(value.get("category")),
    )


def _conversation(value: Any) -> Conversation | None:
    if not isinstance(value, dict):
        return None
    return Conversation(
        id=as_id(value.get("id")),
        origin_type=as_str(as_dict(value.get("origin")).get("type")),
        expiration_timestamp=as_timestamp(value.get("expiration_timestamp")),
    )
