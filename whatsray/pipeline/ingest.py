"""The webhook's durable half: append every event to the inbox before Meta gets its 200.

An inbox that cannot take the write makes the POST fail with 503, so Meta delivers it again
later: nothing is ever acknowledged that is not stored (docs/architecture.md, section 1,
guarantee 1).
"""

from __future__ import annotations

import logging

from whatsray.inbox import Inbox, InboxUnavailable
from whatsray.whatsapp.events import Event
from whatsray.whatsapp.webhook import WebhookRejected

log = logging.getLogger(__name__)


class InboxSink:
    """An `EventSink` for the webhook receiver: dedupe + append, or 503."""

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox
        self.appended = 0
        self.duplicates = 0

    async def __call__(self, events: list[Event]) -> None:
        try:
            result = await self._inbox.append(events)
        except InboxUnavailable as exc:
            log.error("inbox unavailable, answering 503 so Meta retries: %s", exc)
            raise WebhookRejected(503, "inbox unavailable, retry later") from None
        self.appended += len(result.new)
        self.duplicates += len(result.duplicates)
