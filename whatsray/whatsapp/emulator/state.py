"""What the emulator remembers: logs of traffic, open windows, known message ids and media."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RequestRecord:
    """One request the Graph side saw, with the answer it got."""

    seq: int
    time: float
    method: str
    path: str
    query: str
    status: int
    body: Any
    response: Any


@dataclass(slots=True)
class OutboundRecord:
    """One `POST /messages` call: a message send (`kind="message"`) or a mark-as-read."""

    seq: int
    time: float
    kind: str
    phone_number_id: str
    to: str | None
    recipient: str | None
    body: Any
    wamid: str | None
    outcome: str  # "accepted" | "rejected"
    http_status: int
    error_code: int | None = None
    error_details: str | None = None
    # Statuses the emulator will webhook for this message, in the order they logically happen.
    statuses: list[str] = field(default_factory=list)


@dataclass(slots=True)
class WebhookAttempt:
    """One POST to the webhook URL (every retry and duplicate is its own attempt)."""

    seq: int
    time: float
    job_id: int
    kind: str  # "inbound" | "status"
    label: str
    url: str
    attempt: int
    status_code: int | None
    error: str | None
    delivered: bool
    gave_up: bool
    # The exact bytes sent (shared with the job, so retries cost no copy); parsed on output.
    body: bytes
    signature: str
    # Events in the body: statuses batched into one POST, or the inbound messages.
    events: int = 1


def user_key(value: str) -> str:
    """How users are keyed: phone numbers by digits ("+1 650-555..." is "1650555..."), BSUIDs
    (`US.1349...`) as given."""
    stripped = value.strip()
    digits = "".join(ch for ch in stripped if ch.isdigit())
    if digits and all(ch.isdigit() or ch in "+ -()" for ch in stripped):
        return digits
    return stripped


def to_json(record: Any) -> dict[str, Any]:
    """A record as the control API shows it (a webhook's bytes become its parsed `payload`)."""
    data = dataclasses.asdict(record)
    if isinstance(record, WebhookAttempt):
        data["payload"] = json.loads(data.pop("body"))
    return data


@dataclass(frozen=True, slots=True)
class MediaItem:
    id: str
    data: bytes
    mime_type: str
    filename: str | None
    phone_number_id: str | None
    created_at: float

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.data).digest()

    @property
    def file_size(self) -> int:
        return len(self.data)


class MediaStore:
    """Uploaded media and the short-lived download URLs handed out for them."""

    def __init__(self) -> None:
        self._items: dict[str, MediaItem] = {}
        self._urls: dict[str, tuple[str, float]] = {}  # url token -> (media id, expires at)

    def add(
        self,
        data: bytes,
        *,
        mime_type: str,
        filename: str | None,
        phone_number_id: str | None,
        now: float,
    ) -> MediaItem:
        media_id = str(10**15 + secrets.randbelow(9 * 10**15))
        item = MediaItem(media_id, data, mime_type, filename, phone_number_id, now)
        self._items[media_id] = item
        return item

    def get(self, media_id: str) -> MediaItem | None:
        return self._items.get(media_id)

    def delete(self, media_id: str) -> bool:
        return self._items.pop(media_id, None) is not None

    def issue_url_token(self, media_id: str, *, expires_at: float) -> str:
        token = secrets.token_urlsafe(24)
        self._urls[token] = (media_id, expires_at)
        return token

    def resolve_url_token(self, token: str, *, now: float) -> MediaItem | None:
        """The media behind a download URL; None when unknown, expired or deleted."""
        found = self._urls.get(token)
        if found is None:
            return None
        media_id, expires_at = found
        if now >= expires_at:
            del self._urls[token]
            return None
        return self._items.get(media_id)

    def clear(self) -> None:
        self._items.clear()
        self._urls.clear()


class Windows:
    """Last inbound time per (business number, user), which opens the 24 h service window."""

    def __init__(self) -> None:
        self._last_inbound: dict[tuple[str, str], float] = {}

    def touch(self, phone_number_id: str, user: str, at: float) -> None:
        self._last_inbound[(phone_number_id, user)] = at

    def close(self, phone_number_id: str, user: str) -> None:
        self._last_inbound.pop((phone_number_id, user), None)

    def last_inbound(self, phone_number_id: str, user: str) -> float | None:
        return self._last_inbound.get((phone_number_id, user))

    def is_open(self, phone_number_id: str, user: str, *, now: float, length: float) -> bool:
        last = self.last_inbound(phone_number_id, user)
        return last is not None and now - last < length

    def items(self) -> list[tuple[str, str, float]]:
        return [(pnid, user, at) for (pnid, user), at in self._last_inbound.items()]

    def clear(self) -> None:
        self._last_inbound.clear()


class EmulatorState:
    """All mutable state; `reset()` empties it (configuration and the clock are kept)."""

    def __init__(self, max_log_entries: int) -> None:
        self._seq = itertools.count(1)
        self.requests: deque[RequestRecord] = deque(maxlen=max_log_entries)
        self.outbound: deque[OutboundRecord] = deque(maxlen=max_log_entries)
        self.webhooks: deque[WebhookAttempt] = deque(maxlen=max_log_entries)
        self.windows = Windows()
        self.media = MediaStore()
        # Inbound wamid -> business number it was sent to (mark-as-read must name one of these).
        self.inbound_ids: dict[str, str] = {}
        # (business number, user) -> the last interactive/template message sent, so a button or
        # list reply quotes it in `context.id` like WhatsApp does.
        self.last_interactive: dict[tuple[str, str], str] = {}

    def next_seq(self) -> int:
        return next(self._seq)

    def reset(self) -> None:
        self.requests.clear()
        self.outbound.clear()
        self.webhooks.clear()
        self.windows.clear()
        self.media.clear()
        self.inbound_ids.clear()
        self.last_interactive.clear()
