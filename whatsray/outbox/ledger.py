"""The outbound ledger: where the outbox records each message before it is sent.

The outbox never sends a message it has not recorded first, and updates the record with the
`wamid` after Meta accepted it. That ordering is what makes "a retried turn or a restarted outbox
never sends it twice" true (see docs/outbox.md for the one remaining window).

`OutboundLedger` is the protocol; the store implements it on `Store` (DuckDB), and
`InMemoryLedger` here is a real in-memory implementation for tests and local experiments.

Status values: "pending" < "sent" < "delivered" < "read"; "failed" is final and beats anything
but itself; "dead" (the message is parked in the dead-letter queue) beats everything. Every status
write goes through `merge_status`, so the order in which updates arrive never matters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

from whatsray.observability.logs import IdValue, log_ids
from whatsray.outbox.status import merge_status

__all__ = [
    "DeadLetter",
    "InMemoryLedger",
    "OutboundItem",
    "OutboundLedger",
    "OutboundRecord",
    "OutboundStatus",
    "SendResult",
    "StatusWrite",
]

OutboundStatus = Literal["pending", "sent", "delivered", "read", "failed", "dead"]


@dataclass(frozen=True, slots=True)
class OutboundItem:
    """One message to send, with an id chosen by the caller before anything is sent.

    `outbound_id` is stable across retries of the turn (e.g. `f"{turn_id}:{part}"`) and is also
    sent to Meta as `biz_opaque_callback_data` (at most 512 characters), so status webhooks carry
    it back.
    `body` is the Graph API send body (`messaging_product`, `to`, `type`, ...).
    `purpose` says what the message is for (`reminder`, `greeting`, `handoff_notice`...; None: a
    reply): outside the 24-hour window the outbox sends that purpose's template instead
    (`whatsray.outbox.templates`).
    `in_reply_to`: the inbound message ids the message answers (a turn's inputs), for the
    outbox's log lines only: not stored, not compared.
    """

    outbound_id: str
    chat: str  # canonical ChatKey string
    phone_number_id: str
    to: str
    body: dict[str, Any]
    turn_id: str | None = None
    part: int = 0
    created_at: float = 0.0
    purpose: str | None = None
    in_reply_to: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    """An `OutboundItem` as the ledger knows it: its status, the wamid once sent, the attempts."""

    outbound_id: str
    chat: str
    phone_number_id: str
    to: str
    body: dict[str, Any]
    turn_id: str | None = None
    part: int = 0
    created_at: float = 0.0
    status: str = "pending"
    wamid: str | None = None
    attempts: int = 0  # send attempts started (counted *before* each request goes out)
    last_error: str | None = None
    purpose: str | None = None
    in_reply_to: tuple[str, ...] = field(default=(), compare=False)  # the item's; not stored

    @classmethod
    def from_item(cls, item: OutboundItem) -> OutboundRecord:
        return cls(
            outbound_id=item.outbound_id,
            chat=item.chat,
            phone_number_id=item.phone_number_id,
            to=item.to,
            body=item.body,
            turn_id=item.turn_id,
            part=item.part,
            created_at=item.created_at,
            purpose=item.purpose,
            in_reply_to=item.in_reply_to,
        )

    def to_item(self) -> OutboundItem:
        return OutboundItem(
            outbound_id=self.outbound_id,
            chat=self.chat,
            phone_number_id=self.phone_number_id,
            to=self.to,
            body=self.body,
            turn_id=self.turn_id,
            part=self.part,
            created_at=self.created_at,
            purpose=self.purpose,
            in_reply_to=self.in_reply_to,
        )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the outbox gave up on, with why. Replaying it sends a copy under a new id."""

    dead_letter_id: str
    outbound_id: str
    reason: str  # e.g. "outside_window", "permanent:131026", "retries_exhausted:130429"
    error_code: int | None = None
    details: str | None = None
    created_at: float = 0.0
    replayed_at: float | None = None
    replay_outbound_id: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """Meta accepted `outbound_id` as `wamid` after `attempts` tries (written behind the send)."""

    outbound_id: str
    wamid: str
    attempts: int


@dataclass(frozen=True, slots=True)
class StatusWrite:
    """A status webhook to merge into the record with this wamid."""

    wamid: str
    status: str
    at: float
    error_code: int | None = None


@runtime_checkable
class OutboundLedger(Protocol):
    """What the outbox needs from durable storage. All methods are safe to call repeatedly."""

    async def record_outbound(self, item: OutboundItem) -> bool:
        """Store `item` as "pending" with 0 attempts. False (and no change) if the id exists."""
        ...

    async def get_outbound(self, outbound_id: str) -> OutboundRecord | None: ...

    async def pending_outbound(self, phone_number_id: str, limit: int) -> list[OutboundRecord]:
        """Records of this number still "pending", oldest first: what a restarted outbox sends."""
        ...

    async def note_attempt(self, outbound_id: str, last_error: str | None = None) -> int:
        """Count one more send attempt *before* it is made; returns the new count.

        `last_error` (when given) is why the previous attempt failed and replaces `last_error`.
        A "pending" record with attempts > 0 may have reached Meta (crash between send and
        `mark_sent`); with attempts == 0 it certainly did not.
        """
        ...

    async def mark_sent(self, outbound_id: str, wamid: str) -> None:
        """Store the wamid and merge the status with "sent" (never moves a status backwards)."""
        ...

    async def mark_failed(self, outbound_id: str, reason: str, error_code: int | None) -> None:
        """Merge the status with "failed" and keep `reason` as `last_error`.

        The outbox calls it right after `add_dead_letter`, so on a "dead" record it only
        stores the reason (the merge keeps "dead").
        """
        ...

    async def add_dead_letter(
        self, outbound_id: str, reason: str, error_code: int | None, details: str | None
    ) -> str:
        """Park the message in the dead-letter queue (status "dead"); returns the dead-letter id."""
        ...

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None: ...

    async def mark_dead_letter_replayed(
        self, dead_letter_id: str, replay_outbound_id: str, at: float
    ) -> None:
        """Note that the dead letter was replayed as `replay_outbound_id` (the first call wins)."""
        ...

    async def apply_status(
        self, wamid: str, status: str, at: float, error_code: int | None
    ) -> str | None:
        """Merge a status webhook into the record with this wamid.

        Returns the resulting status after the monotonic merge, None if the wamid is unknown.
        """
        ...

    async def write_behind(
        self, sent: Sequence[SendResult], statuses: Sequence[StatusWrite]
    ) -> None:
        """Many `mark_sent`s (with their attempt counts) then many `apply_status`es, in one call
        and, where the ledger can, one transaction: what the outbox writes behind its sends.
        A write that fails alone (an unknown id) is logged, not raised."""
        ...


@dataclass
class InMemoryLedger:
    """A real `OutboundLedger` kept in dicts: for tests, and as a fake where no store is needed.

    Also keeps the status history (`history[outbound_id]`) so tests can see what was applied.
    """

    records: dict[str, OutboundRecord] = field(default_factory=dict)
    dead_letters: dict[str, DeadLetter] = field(default_factory=dict)
    history: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    _by_wamid: dict[str, str] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def record_outbound(self, item: OutboundItem) -> bool:
        async with self._lock:
            if item.outbound_id in self.records:
                return False
            self.records[item.outbound_id] = OutboundRecord.from_item(item)
            return True

    async def get_outbound(self, outbound_id: str) -> OutboundRecord | None:
        return self.records.get(outbound_id)

    async def pending_outbound(self, phone_number_id: str, limit: int) -> list[OutboundRecord]:
        pending = [
            r
            for r in self.records.values()
            if r.phone_number_id == phone_number_id and r.status == "pending"
        ]
        return sorted(pending, key=lambda r: (r.created_at, r.part))[:limit]

    async def note_attempt(self, outbound_id: str, last_error: str | None = None) -> int:
        async with self._lock:
            record = self._require(outbound_id)
            error = last_error if last_error is not None else record.last_error
            record = replace(record, attempts=record.attempts + 1, last_error=error)
            self.records[outbound_id] = record
            return record.attempts

    async def mark_sent(self, outbound_id: str, wamid: str) -> None:
        async with self._lock:
            record = self._require(outbound_id)
            status = merge_status(record.status, "sent")
            self.records[outbound_id] = replace(record, wamid=wamid, status=status)
            self._by_wamid[wamid] = outbound_id

    async def mark_failed(self, outbound_id: str, reason: str, error_code: int | None) -> None:
        async with self._lock:
            record = self._require(outbound_id)
            status = merge_status(record.status, "failed")
            self.records[outbound_id] = replace(record, status=status, last_error=reason)

    async def add_dead_letter(
        self, outbound_id: str, reason: str, error_code: int | None, details: str | None
    ) -> str:
        async with self._lock:
            record = self._require(outbound_id)
            dead_letter_id = f"dl{len(self.dead_letters) + 1}"
            self.dead_letters[dead_letter_id] = DeadLetter(
                dead_letter_id=dead_letter_id,
                outbound_id=outbound_id,
                reason=reason,
                error_code=error_code,
                details=details,
                created_at=record.created_at,
            )
            status = merge_status(record.status, "dead")
            self.records[outbound_id] = replace(record, status=status)
            return dead_letter_id

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None:
        return self.dead_letters.get(dead_letter_id)

    async def mark_dead_letter_replayed(
        self, dead_letter_id: str, replay_outbound_id: str, at: float
    ) -> None:
        async with self._lock:
            letter = self.dead_letters.get(dead_letter_id)
            if letter is None or letter.replayed_at is not None:
                return
            self.dead_letters[dead_letter_id] = replace(
                letter, replayed_at=at, replay_outbound_id=replay_outbound_id
            )

    async def apply_status(
        self, wamid: str, status: str, at: float, error_code: int | None
    ) -> str | None:
        async with self._lock:
            outbound_id = self._by_wamid.get(wamid)
            if outbound_id is None:
                return None
            record = self.records[outbound_id]
            merged = merge_status(record.status, status)
            self.history.setdefault(outbound_id, []).append((status, at))
            if merged != record.status:
                self.records[outbound_id] = replace(record, status=merged)
            return merged

    async def write_behind(
        self, sent: Sequence[SendResult], statuses: Sequence[StatusWrite]
    ) -> None:
        for result in sent:
            await self.mark_sent(result.outbound_id, result.wamid)
            async with self._lock:
                record = self.records[result.outbound_id]
                attempts = max(record.attempts, result.attempts)
                self.records[result.outbound_id] = replace(record, attempts=attempts)
        for status in statuses:
            await self.apply_status(status.wamid, status.status, status.at, status.error_code)

    def _require(self, outbound_id: str) -> OutboundRecord:
        record = self.records.get(outbound_id)
        if record is None:
            raise KeyError(f"unknown outbound id {outbound_id!r}")
        return record


def record_log_ids(record: OutboundRecord) -> dict[str, IdValue]:
    """A record's ids for a log line (docs/logging.md); `wamid`: the inbound messages it answers
    (the reply's own id is in the message)."""
    return log_ids(
        outbound_id=record.outbound_id,
        turn_id=record.turn_id,
        chat=record.chat,
        wamid=record.in_reply_to,
    )
