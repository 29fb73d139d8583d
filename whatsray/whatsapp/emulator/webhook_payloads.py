"""Meta-shaped webhook bodies (reference section 3) and the exact bytes Meta would send.

Meta serialises with escaped unicode and escaped slashes (`\\/`), compact separators. The
signature is computed on those bytes, so a receiver that re-serialises the JSON breaks: the
emulator reproduces the encoding so that such receivers fail here and not in production.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Sequence
from typing import Any

from whatsray.whatsapp.emulator.config import BusinessNumber


def encode_webhook_body(payload: dict[str, Any]) -> bytes:
    """Serialise like Meta: ASCII only (`\\u00e4`), `/` as `\\/`, no spaces."""
    text = json.dumps(payload, ensure_ascii=True, separators=(",", ":"))
    # "/" only occurs inside JSON strings, where "\/" is a valid escape of it.
    return text.replace("/", "\\/").encode("ascii")


def new_wamid(user: str) -> str:
    """A fresh, globally unique message id in Meta's `wamid.<base64>` form."""
    digits = "".join(ch for ch in user if ch.isalnum())[:20].encode()
    unique = secrets.token_hex(10).upper().encode()
    raw = (
        b"\x1c\x18" + bytes([len(digits)]) + digits + b"\x15\x02\x00\x12\x18\x14" + unique + b"\x00"
    )
    return "wamid." + base64.b64encode(raw).decode()


def _change(number: BusinessNumber, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "value": {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": number.display_phone_number,
                "phone_number_id": number.id,
            },
            **value,
        },
        "field": "messages",
    }


def _envelope(number: BusinessNumber, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": number.waba_id, "changes": [_change(number, value)]}],
    }


def build_inbound_payload(
    number: BusinessNumber,
    *,
    wa_id: str | None,
    user_id: str | None,
    profile_name: str | None,
    messages: list[dict[str, Any]],
) -> dict[str, Any]:
    """An inbound `messages` webhook. `messages` are complete Meta message objects."""
    contact: dict[str, Any] = {"profile": {"name": profile_name or ""}}
    if wa_id:
        contact["wa_id"] = wa_id
    if user_id:
        contact["user_id"] = user_id
    return _envelope(number, {"contacts": [contact], "messages": messages})


def pricing_for(is_template: bool) -> dict[str, Any]:
    """Per-message pricing (PMP): service replies in the window are free; templates are billed."""
    if is_template:
        return {
            "billable": True,
            "pricing_model": "PMP",
            "type": "regular",
            "category": "marketing",
        }
    return {
        "billable": False,
        "pricing_model": "PMP",
        "type": "free_customer_service",
        "category": "service",
    }


def status_entry(
    *,
    wamid: str,
    status: str,
    timestamp: int,
    recipient_id: str | None,
    recipient_user_id: str | None = None,
    callback_data: str | None = None,
    pricing: dict[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One element of `statuses` for one outbound message (reference section 3c)."""
    entry: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(timestamp)}
    if recipient_id:
        entry["recipient_id"] = recipient_id
    if recipient_user_id:
        entry["recipient_user_id"] = recipient_user_id
    if callback_data is not None:
        entry["biz_opaque_callback_data"] = callback_data
    if pricing is not None:
        entry["pricing"] = pricing
    if errors:
        entry["errors"] = errors
    return entry


def build_statuses_payload(
    items: Sequence[tuple[BusinessNumber, dict[str, Any]]],
) -> dict[str, Any]:
    """Several statuses in one body, grouped the way Meta batches them: one `entry` per WABA,
    one change per business number, statuses in the order given. One item gives exactly the
    one-status body."""
    grouped: dict[str, dict[str, tuple[BusinessNumber, list[dict[str, Any]]]]] = {}
    for number, entry in items:
        by_number = grouped.setdefault(number.waba_id, {})
        by_number.setdefault(number.id, (number, []))[1].append(entry)
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": waba_id,
                "changes": [
                    _change(number, {"statuses": statuses})
                    for number, statuses in by_number.values()
                ],
            }
            for waba_id, by_number in grouped.items()
        ],
    }
