"""Where a session host puts what it gave up on (docs/errors.md, "Quarantine").

Three kinds of item end here, each written to the store with its reason and then acked:
- a session's items that failed for good (the session's `quarantine` hook);
- events for a business number this app does not serve (one clear log line per number);
- inbox entries that cannot be decoded, or name no chat (poison).

The store keeps the events as the inbox held them, so the admin API can replay a record after
the cause is fixed (`POST /api/quarantine/{id}/replay`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from whatsray import metrics
from whatsray.inbox import InboxEntry
from whatsray.inbox.entries import EVENTS
from whatsray.observability.logs import log_ids
from whatsray.session.config import Quarantine
from whatsray.session.turns import AnyEvent
from whatsray.store.quarantine import NOT_SERVED, QuarantineRecord, quarantine_id
from whatsray.whatsapp.events import MessageEvent

__all__ = ["QuarantineDesk", "QuarantineStorePort"]

log = logging.getLogger(__name__)


class QuarantineStorePort(Protocol):
    async def quarantine(
        self, record: QuarantineRecord, messages: Sequence[MessageEvent] = ()
    ) -> bool: ...


def _events_json(events: Sequence[AnyEvent]) -> str:
    return "[" + ",".join(EVENTS.dump_json(event).decode() for event in events) + "]"


class QuarantineDesk:
    def __init__(self, store: QuarantineStorePort, *, now: Callable[[], float]) -> None:
        self._store = store
        self._now = now
        self._numbers_logged: set[str] = set()

    async def session_items(self, item: Quarantine) -> None:
        """The sessions' `quarantine` hook: commit-or-raise (the session retries it)."""
        await self._write(
            item.stage, item.reason, item.error, item.events, str(item.chat), item.turn_id
        )

    async def not_served(self, event: AnyEvent, number: str) -> None:
        """Store an event for a business number no outbox serves; raises if it was not stored."""
        if number not in self._numbers_logged:  # one line per number, not one per event
            self._numbers_logged.add(number)
            log.error(
                "events for business number %s, which this app does not serve, are stored as"
                " not_served and acked: add the number to WHATSRAY_PHONE_NUMBER_IDS and replay"
                " them (GET /api/quarantine)",
                number,
            )
        chat = str(event.chat) if event.chat is not None else None
        error = f"business number {number} is not served by this app"
        await self._write("delivery", NOT_SERVED, error, (event,), chat)

    async def poison(self, entry: InboxEntry, reason: str) -> None:
        """Store an inbox entry nobody can handle (undecodable, or naming no chat)."""
        event_id = f"{entry.partition}:{entry.entry_id}"
        fields = (
            dict(entry.raw) if entry.event is None else EVENTS.dump_python(entry.event, mode="json")
        )
        record = QuarantineRecord(
            quarantine_id=quarantine_id("poison", (event_id,)),
            stage="poison",
            reason="poison",
            error=reason,
            event_ids=(event_id,),
            events=json.dumps([fields]),
            created_at=self._now(),
        )
        await self._store.quarantine(record)
        metrics.quarantined.inc(stage="poison", reason="poison")
        log.error("inbox entry %s quarantined as poison: %s", event_id, reason)

    async def _write(
        self,
        stage: str,
        reason: str,
        error: str,
        events: Sequence[AnyEvent],
        chat: str | None,
        turn_id: str | None = None,
    ) -> None:
        ids = tuple(event.idempotency_key for event in events)
        record = QuarantineRecord(
            quarantine_id=quarantine_id(stage, ids),
            stage=stage,
            reason=reason,
            error=error,
            event_ids=ids,
            events=_events_json(events),
            chat=chat,
            turn_id=turn_id,
            created_at=self._now(),
        )
        messages = [event for event in events if isinstance(event, MessageEvent)]
        if await self._store.quarantine(record, messages):
            metrics.quarantined.inc(stage=stage, reason=reason)
            log.warning(
                "quarantined %d item(s) as %s (%s)", len(ids), record.quarantine_id, reason,
                extra=log_ids(wamid=list(ids), turn_id=turn_id, chat=chat),
            )  # fmt: skip
