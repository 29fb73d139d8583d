"""What the outbox does when WhatsApp's 24-hour window refuses a free-form message
(docs/outbox.md, "Templates"): it sends the template configured for the message's purpose
instead, once (the template's id is derived from the message's), or dead-letters the message
`outside_window` when there is none. The refusal is seen before the send (the window as the
outbox knows it), in Meta's answer (131047), or late, as a `failed` status.

A mixin of `Outbox` (`whatsray/outbox/outbox.py`), which owns the records, the ledger and the
sends; the names it needs from there are declared below for the type checker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from whatsray import metrics
from whatsray.observability.logs import log_ids
from whatsray.outbox.ledger import OutboundItem, OutboundLedger, OutboundRecord, record_log_ids
from whatsray.outbox.statuses import OUTSIDE_WINDOW
from whatsray.outbox.templates import TemplatesConfig, TemplateSpec, free_text
from whatsray.outbox.window import WindowLookup, is_template_body, window_open

if TYPE_CHECKING:
    from whatsray.outbox.memory import OutboxMemory

__all__ = ["WindowFallbacks", "template_outbound_id"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def template_outbound_id(outbound_id: str) -> str:
    """The id of the template sent in place of a message the window refused: derived, so the
    fallback happens at most once however often the refusal is seen."""
    return f"{outbound_id}:template"


class WindowFallbacks:
    if TYPE_CHECKING:
        memory: OutboxMemory
        _ledger: OutboundLedger
        _templates: TemplatesConfig
        _window_lookup: WindowLookup | None
        _closed: bool
        _now: Callable[[], float]

        async def _find(self, outbound_id: str) -> OutboundRecord | None: ...

        async def _deliver(self, outbound_id: str) -> OutboundRecord: ...

        async def _send_logged(self, items: Sequence[OutboundItem]) -> None: ...

        def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]: ...

        def _merge_known(
            self, outbound_id: str, status: str, reason: str | None = None
        ) -> None: ...

        async def _dead_letter(
            self, outbound_id: str, reason: str, error_code: int | None, details: str | None
        ) -> OutboundRecord: ...

    async def _async_window_fallback(
        self, outbound_id: str, error_code: int
    ) -> OutboundItem | None:
        """Meta's 131047 as a `failed` status after a 200: the template goes out in the
        background (the caller is the status webhook, which must not wait for a send)."""
        record = await self._find(outbound_id)
        spec = self._template_for(record) if record is not None else None
        if record is None or spec is None or self._closed:
            return None
        item = await self._record_template(record, spec, error_code, "late_131047")
        self._spawn(self._send_logged([item]))
        return item

    async def _window_is_open(self, item: OutboundItem) -> bool:
        if window_open(self.memory.window(item.chat), self._now()):
            return True  # the windows only move forward: an open one needs no lookup
        if self._window_lookup is None:
            return True  # nothing to ask: Meta enforces it (131047 -> outside_window)
        try:
            last_inbound = await self._window_lookup(item.chat)
        except Exception:
            ids = log_ids(outbound_id=item.outbound_id, turn_id=item.turn_id, chat=item.chat)
            log.exception("window lookup failed; letting Meta decide", extra=ids)
            return True
        self.memory.note_window(item.chat, last_inbound)
        return window_open(last_inbound, self._now())

    def _template_for(self, record: OutboundRecord) -> TemplateSpec | None:
        if is_template_body(record.body):
            return None  # a template is never refused for the window; nothing to fall back to
        return self._templates.for_purpose(record.purpose)

    async def _outside_window(
        self, record: OutboundRecord, error_code: int | None, details: str
    ) -> OutboundRecord:
        """The window refused a free-form message: send its purpose's template instead (in this
        lane, now), or dead-letter it `outside_window` when no template is configured."""
        spec = self._template_for(record)
        if spec is None:
            return await self._dead_letter(record.outbound_id, OUTSIDE_WINDOW, error_code, details)
        fallback = await self._record_template(record, spec, error_code, "window_closed")
        return await self._deliver(fallback.outbound_id)

    async def _record_template(
        self, record: OutboundRecord, spec: TemplateSpec, error_code: int | None, reason: str
    ) -> OutboundItem:
        """Record the template that replaces `record` (once: its id is derived), then close the
        original as `failed` with where it went. In this order, a crash in between leaves the
        original pending, and its next delivery finds the template already recorded."""
        item = OutboundItem(
            outbound_id=template_outbound_id(record.outbound_id),
            chat=record.chat,
            phone_number_id=record.phone_number_id,
            to=record.to,
            body=spec.graph_body(record.to, free_text(record.body)),
            turn_id=record.turn_id,
            part=record.part,
            created_at=self._now(),
            purpose=record.purpose,
            in_reply_to=record.in_reply_to,
        )
        if await self._ledger.record_outbound(item):
            self.memory.add_fresh(item)
            metrics.template_fallbacks.inc(purpose=record.purpose or "reply", reason=reason)
            log.info(
                "%s is outside the 24 h window: sending template %r as %s",
                record.outbound_id,
                spec.name,
                item.outbound_id,
                extra=record_log_ids(record),
            )
        closed = f"{OUTSIDE_WINDOW}: sent as template {spec.name} ({item.outbound_id})"
        await self._ledger.mark_failed(record.outbound_id, closed, error_code)
        self._merge_known(record.outbound_id, "failed", closed)
        return item
