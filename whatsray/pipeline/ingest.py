"""The webhook's durable half: append every event to the inbox before Meta gets its 200.

An inbox that cannot take the write makes the POST fail with 503, so Meta delivers it again
later: nothing is ever acknowledged that is not stored (docs/architecture.md, section 1,
guarantee 1).
"""

from __future__ import annotations

import logging

from whatsray.inbox import AppendOutcome, Inbox, InboxUnavailable
from whatsray.observability.logs import log_ids
from whatsray.whatsapp.events import Event, MessageEvent, StatusEvent
from whatsray.whatsapp.webhook import WebhookRejected

log = logging.getLogger(__name__)


class InboxSink:
    """An `EventSink` for the webhook receiver: dedupe + append, or 503."""

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox

    async def __call__(self, events: list[Event]) -> str | None:
        """ "duplicate" when every event was in the inbox already (Meta delivered it again)."""
        try:
            result = await self._inbox.append(events)
        except InboxUnavailable as exc:
            wamids = [e.message_id for e in events if isinstance(e, MessageEvent) and e.message_id]
            log.error(
                "inbox unavailable, answering 503 so Meta retries: %s",
                exc,
                extra=log_ids(wamid=wamids),
            )
            raise WebhookRejected(503, "inbox unavailable, retry later") from None
        for outcome in result.outcomes:
            _log_appended(events[outcome.index], outcome)
        return "duplicate" if result.outcomes and not result.new else None


def _log_appended(event: Event, outcome: AppendOutcome) -> None:
    """The first line of an event's path (docs/logging.md): its message id, chat and partition.
    Statuses (three per reply) only at DEBUG: a line costs about 0.1 ms of CPU on Ray."""
    level = logging.DEBUG if isinstance(event, StatusEvent) else logging.INFO
    if not log.isEnabledFor(level):  # the hot path: no ids to build for nothing
        return
    wamid = event.message_id if isinstance(event, MessageEvent | StatusEvent) else None
    outbound = event.biz_opaque_callback_data if isinstance(event, StatusEvent) else None
    ids = log_ids(wamid=wamid, outbound_id=outbound, chat=event.chat, partition=outcome.partition)
    what = "a duplicate of" if outcome.duplicate else "appended as"
    log.log(level, "%s event %s entry %s", event.kind, what, outcome.entry_id, extra=ids)
