"""The outbox's status webhooks (docs/outbox.md): merged into its records in memory, written
behind its sends in one store call per batch, and returned only once written, so a status the
session host acknowledges is durable. A `failed` status dead-letters the message, or sends its
template when Meta refused it for the 24-hour window.

A mixin of `Outbox` (`whatsray/outbox/outbox.py`), which owns the records, the ledger and the
sends; the names it needs from there are declared below for the type checker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from whatsray import metrics
from whatsray.outbox.ledger import OutboundItem, OutboundLedger, OutboundRecord, StatusWrite
from whatsray.whatsapp.events import StatusEvent

if TYPE_CHECKING:
    from whatsray.batching import Batcher
    from whatsray.outbox.ledger import SendResult
    from whatsray.outbox.memory import OutboxMemory

__all__ = ["OUTSIDE_WINDOW", "RE_ENGAGEMENT_CODE", "StatusWebhooks"]

log = logging.getLogger(__name__)

OUTSIDE_WINDOW = "outside_window"
RE_ENGAGEMENT_CODE = 131047


class StatusWebhooks:
    if TYPE_CHECKING:
        memory: OutboxMemory
        _ledger: OutboundLedger
        _behind: Batcher[SendResult | StatusWrite, None]
        _dead_lettering: set[str]
        _now: Callable[[], float]

        def _count(self, event: str, n: int = 1) -> None: ...

        async def _find(self, outbound_id: str) -> OutboundRecord | None: ...

        def _sent(self, outbound_id: str, wamid: str) -> OutboundRecord: ...

        async def _async_window_fallback(
            self, outbound_id: str, error_code: int
        ) -> OutboundItem | None: ...

        async def _dead_letter(
            self, outbound_id: str, reason: str, error_code: int | None, details: str | None
        ) -> OutboundRecord: ...

    async def apply_status(self, event: StatusEvent) -> str | None:
        """`apply_statuses` of one event."""
        [merged] = await self.apply_statuses([event])
        return merged

    async def apply_statuses(self, events: Sequence[StatusEvent]) -> list[str | None]:
        """Merge status webhooks into their records; the resulting statuses (None: unknown).

        Merged in memory, then written in one store call, awaited: the caller acknowledges the
        webhooks once this returns, so an acknowledged status is durable.

        A `sent` can overtake our own send's answer (Meta answers the send and fires the
        webhook at once): when the wamid is unknown but the event carries our `outbound_id` as
        `biz_opaque_callback_data`, the wamid is stored first, then the status applied. A
        `failed` status dead-letters the message, once; a `failed` 131047 (the window, refused
        after a 200) sends the message's template instead when one is configured (once: the
        template's id is derived from the message's).
        """
        results: list[str | None] = []
        writes: list[StatusWrite] = []
        for event in events:
            results.append(await self._merge_status(event, writes))
        await asyncio.gather(*(self._behind.submit(write) for write in writes))
        for index, event in enumerate(events):
            if results[index] == "failed":
                results[index] = await self._on_failed_status(event) or results[index]
        return results

    async def _merge_status(self, event: StatusEvent, writes: list[StatusWrite]) -> str | None:
        wamid = event.message_id
        if wamid is None:
            return None
        status = event.status.value
        at = event.timestamp.timestamp() if event.timestamp is not None else self._now()
        error_code = event.errors[0].code if event.errors else None
        record = self.memory.by_wamid(wamid)
        outbound_id = event.biz_opaque_callback_data
        if record is None and outbound_id:
            known = await self._find(outbound_id)
            if known is not None and known.wamid in (None, wamid):
                record = self._sent(outbound_id, wamid)
            elif known is not None:
                # Our id under a second wamid: the ambiguous window did produce a duplicate.
                self._count("duplicate_send_seen")
                log.error("outbound %s was sent twice: %s and %s", outbound_id, known.wamid, wamid)
        if record is None:
            # Not a message this outbox knows: the ledger keeps it for a wamid it learns later.
            merged = await self._ledger.apply_status(wamid, status, at, error_code)
        else:
            merged = self.memory.merge(record.outbound_id, status).status
            writes.append(StatusWrite(wamid, status, at, error_code))
        metrics.statuses.inc(status=status)
        if merged is None:
            self._count("status_unknown")
        return merged

    async def _on_failed_status(self, event: StatusEvent) -> str | None:
        """Dead-letter the message (or send its template): its status after that."""
        outbound_id = event.biz_opaque_callback_data
        if not outbound_id or outbound_id in self._dead_lettering:
            return None
        error_code = event.errors[0].code if event.errors else None
        self._dead_lettering.add(outbound_id)
        try:
            if error_code == RE_ENGAGEMENT_CODE:
                fallback = await self._async_window_fallback(outbound_id, error_code)
                if fallback is not None:
                    return None
            details = "; ".join(
                f"{e.code}: {e.title or e.message or ''}".strip() for e in event.errors
            )
            if error_code == RE_ENGAGEMENT_CODE:
                reason = OUTSIDE_WINDOW  # Meta's async form of the window refusal
            else:
                reason = f"failed_status:{error_code}"
            return (await self._dead_letter(outbound_id, reason, error_code, details)).status
        finally:
            self._dead_lettering.discard(outbound_id)
