"""Writes of the outbound ledger: attempts, the wamid, failures, dead letters, status webhooks.

Each bulk kind loads the rows its group touches, applies the group's writes to them in Python
in order (every status change goes through `merge_status`, so the result is monotonic whatever
the arrival order), then writes the changed rows back in two statements (ledger row and the
chat's message row). SQL text is built only from constants here; values are parameters.
"""
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from duckdb import DuckDBPyConnection

from whatsray.outbox.status import merge_status
from whatsray.outbox.statuses import OUTSIDE_WINDOW
from whatsray.store.errors import UnknownOutboundError
from whatsray.store.rows import rows_table
from whatsray.store.writer import WriteKind

__all__ = [
    "ATTEMPT",
    "DEAD_LETTER",
    "EARLY_STATUS_TTL_S",
    "FAILED",
    "SENT",
    "STATUS",
    "Attempt",
    "DeadLetterRequest",
    "Failure",
    "Sent",
    "StatusUpdate",
    "mark_dead_letter_replayed",
]

# Meta redelivers for up to 7 days; a status parked longer than that will never find its message.
EARLY_STATUS_TTL_S = 7 * 24 * 3600.0

_HISTORY_TYPE = "STRUCT(status VARCHAR, changed_at DOUBLE, error_code INTEGER)[]"


@dataclass(frozen=True, slots=True)
class Attempt:
    outbound_id: str
    last_error: str | None
    now: float


@dataclass(frozen=True, slots=True)
class Sent:
    outbound_id: str
    wamid: str
    now: float
    attempts: int | None = None  # the outbox's count, written with the wamid (write-behind)


@dataclass(frozen=True, slots=True)
class Failure:
    outbound_id: str
    reason: str
    error_code: int | None
    now: float


@dataclass(frozen=True, slots=True)
class DeadLetterRequest:
    outbound_id: str
    reason: str
    error_code: int | None
    details: str | None
    new_id: str
    now: float


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    wamid: str
    status: str
    at: float
    error_code: int | None
    now: float


@dataclass(slots=True)
class _Row:
    """An outbound row being changed by a group of writes."""

    outbound_id: str
    chat: str
    status: str
    wamid: str | None
    attempts: int
    last_error: str | None
    last_error_code: int | None
    changed: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    def merge(self, incoming: str) -> str:
        merged = merge_status(self.status, incoming)
        if merged != self.status:
            self.status = merged
            self.changed = True
        return merged

    def webhook(self, incoming: str, at: float, error_code: int | None) -> str:
        before = self.status
        merged = self.merge(incoming)
        if merged == "failed" and before != "failed":
            self.last_error = f"status webhook: failed ({error_code})"
            self.last_error_code = error_code
        # The history keeps every arrival, merged or not: what Meta said, in arrival order.
        self.history.append({"status": incoming, "changed_at": at, "error_code": error_code})
        self.changed = True
        return merged


_ROW_COLUMNS = "outbound_id, chat, status, wamid, attempts, last_error, last_error_code"


def _load(conn: DuckDBPyConnection, column: str, keys: Iterable[str]) -> dict[str, _Row]:
    """Rows whose `column` (outbound_id or wamid) is one of `keys`, by that column's value."""
    rows = conn.execute(
        f"SELECT {_ROW_COLUMNS} FROM outbound WHERE {column} IN (SELECT unnest(?::VARCHAR[]))",
        [sorted(set(keys))],
    ).fetchall()
    loaded = [_Row(*row) for row in rows]
    return {getattr(r, column): r for r in loaded}


def _require(rows: dict[str, _Row], outbound_id: str) -> _Row:
    row = rows.get(outbound_id)
    if row is None:
        raise UnknownOutboundError(f"unknown outbound id {outbound_id!r}")
    return row


def _write_back(conn: DuckDBPyConnection, rows: Iterable[_Row], now: float) -> None:
    changed = [r for r in rows if r.changed]
    if not changed:
        return
    source, params = rows_table(
        [
            ("outbound_id", "VARCHAR"),
            ("status", "VARCHAR"),
            ("wamid", "VARCHAR"),
            ("attempts", "INTEGER"),
            ("last_error", "VARCHAR"),
            ("last_error_code", "INTEGER"),
            ("hist", _HISTORY_TYPE),
        ],
        [
            (
                r.outbound_id,
                r.status,
                r.wamid,
                r.attempts,
                r.last_error,
                r.last_error_code,
                r.history,
            )
            for r in changed
        ],
    )
    conn.execute(
        "UPDATE outbound SET status = u.status, wamid = u.wamid, attempts = u.attempts,"
        " last_error = u.last_error, last_error_code = u.last_error_code, updated_at = ?"
        f" FROM ({source}) u WHERE outbound.outbound_id = u.outbound_id",
        [now, *params],
    )
    conn.execute(
        "UPDATE messages SET status = u.status, wamid = u.wamid, updated_at = ?,"
        " status_history = list_concat(messages.status_history, u.hist)"
        f" FROM ({source}) u WHERE messages.id = u.outbound_id AND messages.direction = 'out'",
        [now, *params],
    )


def _note_attempts(conn: DuckDBPyConnection, attempts: Sequence[Attempt]) -> list[int]:
    rows = _load(conn, "outbound_id", (a.outbound_id for a in attempts))
    counts = []
    for a in attempts:
        row = _require(rows, a.outbound_id)
        row.attempts += 1
        if a.last_error is not None:
            row.last_error = a.last_error
        row.changed = True
        counts.append(row.attempts)
    _write_back(conn, rows.values(), max(a.now for a in attempts))
    return counts


def _mark_sent(conn: DuckDBPyConnection, sends: Sequence[Sent]) -> list[None]:
    """Store each wamid and merge "sent"; then merge statuses that arrived before the wamid."""
    rows = _load(conn, "outbound_id", (s.outbound_id for s in sends))
    for s in sends:
        row = _require(rows, s.outbound_id)
        row.wamid = s.wamid
        if s.attempts is not None:
            row.attempts = max(row.attempts, s.attempts)
        row.merge("sent")
        row.changed = True
    by_wamid = {r.wamid: r for r in rows.values() if r.wamid is not None}
    early = conn.execute(
        "SELECT wamid, status, status_at, error_code FROM early_statuses"
        " WHERE wamid IN (SELECT unnest(?::VARCHAR[])) ORDER BY status_at, received_at",
        [sorted(by_wamid)],
    ).fetchall()
    if early:
        conn.execute(
            "DELETE FROM early_statuses WHERE wamid IN (SELECT unnest(?::VARCHAR[]))",
            [sorted({e[0] for e in early})],
        )
        for wamid, status, at, error_code in early:
            by_wamid[wamid].webhook(status, at, error_code)
    _write_back(conn, rows.values(), max(s.now for s in sends))
    return [None] * len(sends)


def _mark_failed(conn: DuckDBPyConnection, failures: Sequence[Failure]) -> list[None]:
    rows = _load(conn, "outbound_id", (f.outbound_id for f in failures))
    for f in failures:
        row = _require(rows, f.outbound_id)
        row.merge("failed")
        row.last_error, row.last_error_code = f.reason, f.error_code
        row.changed = True
    _write_back(conn, rows.values(), max(f.now for f in failures))
    return [None] * len(failures)


def _add_dead_letters(conn: DuckDBPyConnection, requests: Sequence[DeadLetterRequest]) -> list[str]:
    """Park each message (status "dead"). While a message has an unreplayed dead letter, asking
    again returns that one's id: the outbox may repeat itself after a restart."""
    ids = sorted({r.outbound_id for r in requests})
    rows = _load(conn, "outbound_id", ids)
    open_letters: dict[str, str] = {
        outbound_id: letter_id
        for outbound_id, letter_id in conn.execute(
            "SELECT outbound_id, id FROM dead_letters WHERE replayed_at IS NULL"
            " AND outbound_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY created_at",
            [ids],
        ).fetchall()
    }
    now = max(r.now for r in requests)
    new_letters: list[tuple[Any, ...]] = []
    results = []
    for r in requests:
        row = _require(rows, r.outbound_id)
        if r.outbound_id in open_letters:
            results.append(open_letters[r.outbound_id])
            continue
        open_letters[r.outbound_id] = r.new_id
        new_letters.append((r.new_id, r.outbound_id, row.chat, r.reason, r.error_code, r.details))
        row.merge("dead")
        row.last_error, row.last_error_code = r.reason, r.error_code
        row.changed = True
        results.append(r.new_id)
    if new_letters:
        source, params = rows_table(
            [
                ("id", "VARCHAR"),
                ("outbound_id", "VARCHAR"),
                ("chat", "VARCHAR"),
                ("reason", "VARCHAR"),
                ("error_code", "INTEGER"),
                ("details", "VARCHAR"),
            ],
            new_letters,
        )
        conn.execute(
            "INSERT INTO dead_letters (id, outbound_id, chat, reason, error_code, details,"
            f" created_at) SELECT *, ? FROM ({source})",
            [now, *params],
        )
        outside = [letter[0] for letter in new_letters if letter[3] == OUTSIDE_WINDOW]
        _note_outside_window(conn, outside)
    _write_back(conn, rows.values(), now)
    return results


def _note_outside_window(conn: DuckDBPyConnection, letter_ids: list[str]) -> None:
    """The inputs of a turn whose reply the window refused end `outside_window`, naming the
    dead letter (docs/errors.md, "The account")."""
    if not letter_ids:
        return
    conn.execute(
        "UPDATE messages SET outcome = 'outside_window', outcome_ref = d.id FROM ("
        " SELECT dl.id, unnest(t.input_ids) AS message_id FROM dead_letters dl"
        " JOIN outbound o ON o.outbound_id = dl.outbound_id"
        " JOIN turns t ON t.turn_id = o.turn_id WHERE dl.id IN (SELECT unnest(?::VARCHAR[]))"
        ") d WHERE messages.id = d.message_id AND messages.direction = 'in'",
        [letter_ids],
    )


def _apply_statuses(conn: DuckDBPyConnection, updates: Sequence[StatusUpdate]) -> list[str | None]:
    """Merge status webhooks; None for an unknown wamid (parked until `mark_sent` stores it)."""
    rows = _load(conn, "wamid", (u.wamid for u in updates))
    now = max(u.now for u in updates)
    results: list[str | None] = []
    parked: list[tuple[Any, ...]] = []
    for u in updates:
        row = rows.get(u.wamid)
        if row is None:
            parked.append((u.wamid, u.status, u.at, u.error_code))
            results.append(None)
        else:
            results.append(row.webhook(u.status, u.at, u.error_code))
    if parked:
        conn.execute("DELETE FROM early_statuses WHERE received_at < ?", [now - EARLY_STATUS_TTL_S])
        source, params = rows_table(
            [
                ("wamid", "VARCHAR"),
                ("status", "VARCHAR"),
                ("status_at", "DOUBLE"),
                ("error_code", "INTEGER"),
            ],
            parked,
        )
        conn.execute(
            "INSERT INTO early_statuses (wamid, status, status_at, error_code, received_at)"
            f" SELECT *, ? FROM ({source})",
            [now, *params],
        )
    _write_back(conn, rows.values(), now)
    return results


def mark_dead_letter_replayed(
    conn: DuckDBPyConnection, dead_letter_id: str, replay_outbound_id: str, at: float
) -> bool:
    """True if this call marked it; False if unknown or already replayed (the first call wins)."""
    row = conn.execute(
        "UPDATE dead_letters SET replayed_at = ?, replay_outbound_id = ?"
        " WHERE id = ? AND replayed_at IS NULL RETURNING id",
        [at, replay_outbound_id, dead_letter_id],
    ).fetchone()
    return row is not None


# Ranks follow a message's life (recorded, attempted, sent, status, failed, dead): writes of
# one batch are concurrent, but this order also suits a caller that did not await in between.
ATTEMPT: WriteKind[Attempt, int] = WriteKind("note_attempt", 30, _note_attempts)
SENT: WriteKind[Sent, None] = WriteKind("mark_sent", 40, _mark_sent)
STATUS: WriteKind[StatusUpdate, str | None] = WriteKind("apply_status", 50, _apply_statuses)
FAILED: WriteKind[Failure, None] = WriteKind("mark_failed", 60, _mark_failed)
DEAD_LETTER: WriteKind[DeadLetterRequest, str] = WriteKind("add_dead_letter", 70, _add_dead_letters)
