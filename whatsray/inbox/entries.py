"""Stream entries back into values: the event decoded, or a poison entry that keeps its fields."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from whatsray.inbox.append_script import FORMAT_VERSION
from whatsray.inbox.values import InboxEntry
from whatsray.whatsapp.events import Event

__all__ = ["EVENTS", "decode_entry", "stream_entries", "text_of"]

log = logging.getLogger(__name__)

EVENTS: TypeAdapter[Event] = TypeAdapter(Event)
"""How events travel in the stream: `dump_json` into the `event` field, `validate_json` out."""


def text_of(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def stream_entries(reply: Any) -> list[tuple[Any, Any]]:
    """The (id, fields) pairs of a one-stream XREADGROUP reply (RESP2 list or RESP3 map)."""
    if not reply:
        return []
    if isinstance(reply, Mapping):
        streams = list(reply.values())
        return list(streams[0][0]) if streams and streams[0] else []
    return list(reply[0][1])


def decode_entry(
    partition: int, entry_id: Any, fields: Any, delivery_count: int | None, *, quiet: bool = False
) -> InboxEntry:
    """The entry as a value; a poison one is logged, unless `quiet` (a listing, not a read)."""
    entry_id = text_of(entry_id)
    raw = {text_of(k): text_of(v) for k, v in (fields or {}).items()}
    payload = None if not fields else fields.get(b"event", fields.get("event"))
    if not fields:
        reason = "entry deleted from the stream (trimmed before it was acked?)"
    elif payload is None:
        reason = "entry has no 'event' field"
    elif raw.get("v", FORMAT_VERSION) != FORMAT_VERSION:
        reason = f"unknown entry format version {raw['v']!r}"
    else:
        try:
            event = EVENTS.validate_json(payload)
        except ValidationError as exc:
            first = exc.errors()[0]["msg"]
            reason = f"event does not decode: {exc.error_count()} error(s), first: {first}"
        else:
            return InboxEntry(partition, entry_id, event, delivery_count)
    if not quiet:
        log.warning("partition %d: poison entry %s: %s", partition, entry_id, reason)
    return InboxEntry(partition, entry_id, None, delivery_count, poison=reason, raw=raw)
