"""Items the pipeline gave up on, migration 6 (docs/errors.md, "Quarantine").

A quarantined item is one or more inbox events that failed for good on the message path: a
permanent error, a transient one past its deadline, an event for a number the app does not
serve, an inbox entry that cannot be decoded. It is written here with its reason and the events
themselves (as the inbox holds them), its inbound messages get the outcome `quarantined` (or
`not_served`), and the session acks it and goes on. The admin API lists the records and replays
one: the claim below lets one replay through, and the events go back into the inbox.

The record's id derives from where it failed and its events: the same item quarantined twice (a
retried write, a redelivery) is one record. `QuarantineMixin` adds the methods to `Store`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from duckdb import DuckDBPyConnection

from whatsray.store.chat_writes import insert_inbound_rows
from whatsray.store.rows import InboundRow, inbound_row
from whatsray.store.validation import check_limit
from whatsray.whatsapp.events import MessageEvent

__all__ = [
    "NOT_SERVED",
    "QUARANTINE_REASONS",
    "QuarantineMixin",
    "QuarantineRecord",
    "UnresolvedMessage",
    "quarantine_id",
]

T = TypeVar("T")

NOT_SERVED = "not_served"
# permanent: retrying cannot help; deadline: still failing when its deadline passed;
# not_served: for a business number this app does not serve; poison: an undecodable entry.
QUARANTINE_REASONS = frozenset({"permanent", "deadline", NOT_SERVED, "poison"})

_COLUMNS = "id, chat, stage, reason, error, event_ids, events, turn_id, created_at, replayed_at"


def quarantine_id(stage: str, event_ids: Sequence[str]) -> str:
    digest = hashlib.sha256("\x1f".join((stage, *event_ids)).encode()).hexdigest()
    return f"q-{digest[:24]}"


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """`events`: a JSON array of the events as the inbox holds them (a poison entry: its raw
    fields), what a replay appends again. `stage`: the step that failed (commit_turn,
    load_state, record_messages, on_status, status, delivery, poison)."""

    quarantine_id: str
    stage: str
    reason: str
    error: str
    event_ids: tuple[str, ...]
    events: str
    chat: str | None = None
    turn_id: str | None = None
    created_at: float = 0.0
    replayed_at: float | None = None

    def __post_init__(self) -> None:
        if self.reason not in QUARANTINE_REASONS:
            raise ValueError(f"unknown quarantine reason {self.reason!r}")
        if not self.event_ids:
            raise ValueError("a quarantine record names at least one event")

    @property
    def outcome(self) -> str:
        return outcome_of(self.reason)


def outcome_of(reason: str) -> str:
    """The outcome the messages of a record with this reason get."""
    return NOT_SERVED if reason == NOT_SERVED else "quarantined"


@dataclass(frozen=True, slots=True)
class UnresolvedMessage:
    """A stored inbound message with no outcome (replayed, its turn not committed yet)."""

    message_id: str
    chat: str
    type: str
    created_at: float


def _record(row: tuple[Any, ...]) -> QuarantineRecord:
    qid, chat, stage, reason, error, event_ids, events, turn_id, created_at, replayed_at = row
    return QuarantineRecord(
        quarantine_id=qid,
        stage=stage,
        reason=reason,
        error=error,
        event_ids=tuple(event_ids),
        events=events,
        chat=chat,
        turn_id=turn_id,
        created_at=created_at,
        replayed_at=replayed_at,
    )


def write_quarantine(
    conn: DuckDBPyConnection, record: QuarantineRecord, inbound: Sequence[InboundRow]
) -> bool:
    """Insert the record (or take a replayed one up again) and settle its messages; True when it
    is new or was replayed before."""
    new = conn.execute(
        f"INSERT INTO quarantine ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)"  # noqa: S608
        " ON CONFLICT (id) DO UPDATE SET replayed_at = NULL, error = excluded.error,"
        " reason = excluded.reason, created_at = excluded.created_at"
        " WHERE quarantine.replayed_at IS NOT NULL RETURNING id",
        [
            record.quarantine_id,
            record.chat,
            record.stage,
            record.reason,
            record.error,
            list(record.event_ids),
            record.events,
            record.turn_id,
            record.created_at,
        ],
    ).fetchall()
    if inbound:
        insert_inbound_rows(conn, inbound)
        # Stored before (a replay cleared its outcome, or a record of a handoff): settled now,
        # unless a turn answered it in the meantime.
        conn.execute(
            "UPDATE messages SET outcome = ?, outcome_ref = ? WHERE direction = 'in'"
            " AND id IN (SELECT unnest(?::VARCHAR[]))"
            " AND (outcome IS NULL OR outcome IN ('quarantined', 'not_served'))",
            [record.outcome, record.quarantine_id, [row.message_id for row in inbound]],
        )
    return bool(new)


def claim_replay(conn: DuckDBPyConnection, quarantine_id: str, now: float) -> bool:
    """Mark the record replayed and unsettle its messages; False when it is unknown or was
    replayed already (only one replay gets through)."""
    claimed = conn.execute(
        "UPDATE quarantine SET replayed_at = ? WHERE id = ? AND replayed_at IS NULL RETURNING id",
        [now, quarantine_id],
    ).fetchall()
    if claimed:  # unsettled until their replay settles them; they still name the record
        conn.execute(
            "UPDATE messages SET outcome = NULL WHERE outcome_ref = ?"
            " AND outcome IN ('quarantined', 'not_served')",
            [quarantine_id],
        )
    return bool(claimed)


def undo_replay(conn: DuckDBPyConnection, quarantine_id: str) -> None:
    """The replay could not be appended: the record and its messages as they were."""
    row = conn.execute(
        "UPDATE quarantine SET replayed_at = NULL WHERE id = ? RETURNING reason", [quarantine_id]
    ).fetchone()
    if row is None:
        return
    conn.execute(
        "UPDATE messages SET outcome = ? WHERE outcome_ref = ? AND outcome IS NULL",
        [outcome_of(row[0]), quarantine_id],
    )


class QuarantineMixin:
    """The quarantine methods of `Store` (its `_read`, `_write_op` and clock)."""

    _now: Callable[[], float]

    async def _read(self, fn: Callable[[DuckDBPyConnection], T]) -> T:
        raise NotImplementedError

    async def _write_op(self, op: Callable[[DuckDBPyConnection], T]) -> T:
        raise NotImplementedError

    async def quarantine(
        self, record: QuarantineRecord, messages: Sequence[MessageEvent] = ()
    ) -> bool:
        """Write the record and store its `messages` (the inbound ones among its events) with
        the record's outcome, in one transaction. Idempotent: the same record again changes
        nothing (False)."""
        now = self._now()
        rows = tuple(
            inbound_row(event, now, record.outcome, record.quarantine_id) for event in messages
        )
        return await self._write_op(lambda conn: write_quarantine(conn, record, rows))

    async def get_quarantined(self, quarantine_id: str) -> QuarantineRecord | None:
        def read(cur: DuckDBPyConnection) -> QuarantineRecord | None:
            row = cur.execute(
                f"SELECT {_COLUMNS} FROM quarantine WHERE id = ?",  # noqa: S608 (constant)
                [quarantine_id],
            ).fetchone()
            return _record(row) if row is not None else None

        return await self._read(read)

    async def list_quarantined(
        self, limit: int = 50, include_replayed: bool = False, offset: int = 0
    ) -> list[QuarantineRecord]:
        """Newest first; replayed ones only when asked."""
        check_limit(limit, offset)

        def read(cur: DuckDBPyConnection) -> list[QuarantineRecord]:
            rows = cur.execute(
                f"SELECT {_COLUMNS} FROM quarantine"  # noqa: S608 (constant column list)
                " WHERE ? OR replayed_at IS NULL ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
                [include_replayed, limit, offset],
            ).fetchall()
            return [_record(row) for row in rows]

        return await self._read(read)

    async def claim_quarantine_replay(self, quarantine_id: str) -> bool:
        now = self._now()
        return await self._write_op(lambda conn: claim_replay(conn, quarantine_id, now))

    async def undo_quarantine_replay(self, quarantine_id: str) -> None:
        await self._write_op(lambda conn: undo_replay(conn, quarantine_id))

    async def count_quarantined(self) -> int:
        def read(cur: DuckDBPyConnection) -> int:
            sql = "SELECT count(*) FROM quarantine WHERE replayed_at IS NULL"
            row = cur.execute(sql).fetchone()
            return int(row[0]) if row else 0

        return await self._read(read)

    async def unresolved_messages(
        self, older_than_s: float, limit: int = 100
    ) -> list[UnresolvedMessage]:
        """Stored inbound messages with no outcome, received `older_than_s` ago or earlier."""
        check_limit(limit, 0)
        cutoff = self._now() - older_than_s

        def read(cur: DuckDBPyConnection) -> list[UnresolvedMessage]:
            rows = cur.execute(
                "SELECT id, chat, type, updated_at FROM messages WHERE direction = 'in'"
                " AND outcome IS NULL AND updated_at <= ? ORDER BY seq LIMIT ?",
                [cutoff, limit],
            ).fetchall()
            return [UnresolvedMessage(*row) for row in rows]

        return await self._read(read)
