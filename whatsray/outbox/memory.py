"""What a live outbox knows without asking the store: its records, by outbound id and wamid,
and the chats' 24-hour windows (docs/outbox.md, "In memory").

The ledger stays the source of truth. The outbox reads it only for what it has not seen: a
record it did not create or dispatch fresh (a retried turn, a restart), a window it was never
told. Records that are still pending are never evicted (they are being sent); finished ones go
oldest first once there are more than `max_records`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from whatsray.outbox.ledger import OutboundItem, OutboundRecord
from whatsray.outbox.status import merge_status

__all__ = ["OutboxMemory"]

_EVICT_SCAN = 1000  # records looked at per eviction: bounded work per insert


class OutboxMemory:
    def __init__(self, *, max_records: int = 50_000, max_windows: int = 200_000) -> None:
        self._records: dict[str, OutboundRecord] = {}  # insertion order: oldest first
        self._by_wamid: dict[str, str] = {}
        # Loaded from the ledger while pending: it may have been attempted before this outbox
        # started (the ledger does not count attempts before sending: docs/outbox.md).
        self.unsure: set[str] = set()
        # Pending records' creation times, kept on every change: the queue depth without a scan.
        self._pending: dict[str, float] = {}
        self._windows: dict[str, float] = {}
        self._max_records = max_records
        self._max_windows = max_windows

    def __len__(self) -> int:
        return len(self._records)

    def get(self, outbound_id: str) -> OutboundRecord | None:
        return self._records.get(outbound_id)

    def by_wamid(self, wamid: str) -> OutboundRecord | None:
        outbound_id = self._by_wamid.get(wamid)
        return None if outbound_id is None else self._records.get(outbound_id)

    def add_fresh(self, item: OutboundItem) -> OutboundRecord:
        """An item just recorded as pending with no attempt (its caller says so)."""
        known = self._records.get(item.outbound_id)
        if known is not None:
            return known
        return self.put(OutboundRecord.from_item(item))

    def put_loaded(self, record: OutboundRecord) -> OutboundRecord:
        """A record read from the ledger. Memory wins when it already has one (it is newer)."""
        known = self._records.get(record.outbound_id)
        if known is not None:
            return known
        if record.status == "pending":
            self.unsure.add(record.outbound_id)
        return self.put(record)

    def put(self, record: OutboundRecord) -> OutboundRecord:
        self._records[record.outbound_id] = record
        if record.status == "pending":
            self._pending[record.outbound_id] = record.created_at
        else:
            self._pending.pop(record.outbound_id, None)
        if record.wamid is not None:
            self._by_wamid[record.wamid] = record.outbound_id
        if len(self._records) > self._max_records:
            self._evict()
        return record

    def attempt(self, outbound_id: str, last_error: str | None) -> OutboundRecord:
        record = self._require(outbound_id)
        error = last_error if last_error is not None else record.last_error
        return self.put(replace(record, attempts=record.attempts + 1, last_error=error))

    def sent(self, outbound_id: str, wamid: str) -> OutboundRecord:
        record = self._require(outbound_id)
        self.unsure.discard(outbound_id)
        return self.put(replace(record, wamid=wamid, status=merge_status(record.status, "sent")))

    def merge(self, outbound_id: str, status: str, reason: str | None = None) -> OutboundRecord:
        record = self._require(outbound_id)
        merged = merge_status(record.status, status)
        if merged != "pending":
            self.unsure.discard(outbound_id)
        error = reason if reason is not None else record.last_error
        return self.put(replace(record, status=merged, last_error=error))

    def pending(self) -> Mapping[str, float]:
        """The records known here that are not yet accepted by Meta: id -> creation time."""
        return self._pending

    # -- the 24-hour windows ---------------------------------------------------------------------

    def window(self, chat: str) -> float | None:
        return self._windows.get(chat)

    def note_window(self, chat: str, last_inbound_at: float | None) -> None:
        if last_inbound_at is None:
            return
        if len(self._windows) >= self._max_windows and chat not in self._windows:
            self._windows.clear()  # a cache: the ledger answers what it forgot
        self._windows[chat] = max(self._windows.get(chat, last_inbound_at), last_inbound_at)

    def _require(self, outbound_id: str) -> OutboundRecord:
        record = self._records.get(outbound_id)
        if record is None:
            raise KeyError(f"outbound {outbound_id!r} is not in the outbox's memory")
        return record

    def _evict(self) -> None:
        excess = len(self._records) - self._max_records
        done: list[str] = []
        for scanned, (outbound_id, record) in enumerate(self._records.items()):
            if len(done) >= excess or scanned >= _EVICT_SCAN:
                break
            if record.status != "pending":
                done.append(outbound_id)
        for outbound_id in done:
            record = self._records.pop(outbound_id)
            if record.wamid is not None and self._by_wamid.get(record.wamid) == outbound_id:
                del self._by_wamid[record.wamid]
