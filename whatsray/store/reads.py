"""The store's reads, as functions of a read cursor (run on the reader thread).

A read sees every committed write; since a write's future resolves only after its COMMIT,
a caller always reads what it has written.
"""

from __future__ import annotations

import json
from typing import Any

from duckdb import DuckDBPyConnection

from whatsray.outbox.ledger import DeadLetter, OutboundRecord
from whatsray.store.records import (
    ChatRecord,
    Contact,
    MessageRecord,
    SessionSnapshot,
    StatusCounts,
    ToolCallRecord,
    TurnRecord,
)
from whatsray.store.rows import (
    dead_letter_from_row,
    digits_only,
    message_from_row,
    outbound_from_row,
)

__all__ = [
    "count",
    "get_chat",
    "get_contact",
    "get_dead_letter",
    "get_message",
    "get_messages",
    "get_outbound",
    "get_turn",
    "list_chats",
    "list_dead_letters",
    "list_tool_calls",
    "list_turns",
    "load_session",
    "pending_inbound",
    "search_contacts",
    "status_counts",
]

_MESSAGE_COLUMNS = (
    "id, seq, chat, direction, type, text, raw, wamid, status, status_history, turn_id,"
    " outcome, outcome_ref, created_at, updated_at"
)
_CHAT_COLUMNS = (
    "chat, phone_number_id, user_id AS user, agent, handoff, last_inbound_at, created_at,"
    " updated_at"
)
_CONTACT_COLUMNS = "chat, phone_number_id, phone, bsuid, profile_name, first_seen, last_seen"
_TURN_COLUMNS = (
    "turn_id, chat, agent, engine, input_ids, reply_ids, tokens_in, tokens_out, latency_ms,"
    " outcome, error, started_at, finished_at, agent_outcome"
)
_DEAD_LETTER_COLUMNS = (
    "id, outbound_id, reason, error_code, details, created_at, replayed_at, replay_outbound_id"
)


def _rows(cur: DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    result = cur.execute(sql, params)
    names = [column[0] for column in result.description or ()]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def _one(cur: DuckDBPyConnection, sql: str, params: list[Any]) -> dict[str, Any] | None:
    rows = _rows(cur, sql, params)
    return rows[0] if rows else None


def load_session(cur: DuckDBPyConnection, chat: str) -> SessionSnapshot | None:
    """The chat's session state; None for a chat the store has never seen."""
    row = _one(
        cur,
        "SELECT c.chat, c.agent, c.handoff, c.last_inbound_at, s.summary, s.state,"
        " coalesce(s.updated_at, c.updated_at) AS updated_at"
        " FROM chats c LEFT JOIN sessions s ON s.chat = c.chat WHERE c.chat = ?",
        [chat],
    )
    if row is None:
        return None
    state_json = row.pop("state")
    state = json.loads(state_json) if state_json is not None else {}
    return SessionSnapshot(**row, state=state if isinstance(state, dict) else {})


def get_messages(
    cur: DuckDBPyConnection, chat: str, limit: int, before: int | None = None
) -> list[MessageRecord]:
    """The last `limit` messages of the chat (before `seq` = `before`), oldest first."""
    rows = _rows(
        cur,
        f"SELECT {_MESSAGE_COLUMNS} FROM messages"  # noqa: S608 (constant column list)
        " WHERE chat = ? AND (CAST(? AS BIGINT) IS NULL OR seq < ?) ORDER BY seq DESC LIMIT ?",
        [chat, before, before, limit],
    )
    return [message_from_row(row) for row in reversed(rows)]


def get_message(cur: DuckDBPyConnection, message_id: str) -> MessageRecord | None:
    row = _one(cur, f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", [message_id])  # noqa: S608
    return message_from_row(row) if row is not None else None


def pending_inbound(cur: DuckDBPyConnection, chat: str) -> list[MessageRecord]:
    """Inbound messages no recorded turn has consumed yet, in arrival order."""
    rows = _rows(
        cur,
        f"SELECT {_MESSAGE_COLUMNS} FROM messages"  # noqa: S608
        " WHERE chat = ? AND direction = 'in' AND turn_id IS NULL ORDER BY seq",
        [chat],
    )
    return [message_from_row(row) for row in rows]


def get_chat(cur: DuckDBPyConnection, chat: str) -> ChatRecord | None:
    row = _one(cur, f"SELECT {_CHAT_COLUMNS} FROM chats WHERE chat = ?", [chat])  # noqa: S608
    return ChatRecord(**row) if row is not None else None


def list_chats(
    cur: DuckDBPyConnection, limit: int, offset: int, phone_number_id: str | None = None
) -> list[ChatRecord]:
    """Most recently active first; only one business number's when given."""
    rows = _rows(
        cur,
        f"SELECT {_CHAT_COLUMNS} FROM chats"  # noqa: S608
        " WHERE (?::VARCHAR IS NULL OR phone_number_id = ?)"
        " ORDER BY updated_at DESC, chat LIMIT ? OFFSET ?",
        [phone_number_id, phone_number_id, limit, offset],
    )
    return [ChatRecord(**row) for row in rows]


def get_contact(cur: DuckDBPyConnection, chat: str) -> Contact | None:
    row = _one(cur, f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE chat = ?", [chat])  # noqa: S608
    return Contact(**row) if row is not None else None


def search_contacts(
    cur: DuckDBPyConnection, query: str, limit: int, phone_number_id: str | None = None
) -> list[Contact]:
    """Name, phone, BSUID or chat containing `query`, case-insensitive; a phone number also
    matches whatever its punctuation (`+1 650-555` finds `16505551234`). Latest seen first;
    only one business number's contacts when given."""
    needle = query.strip().lower()
    digits = digits_only(needle)
    rows = _rows(
        cur,
        f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE"  # noqa: S608
        " (?::VARCHAR IS NULL OR phone_number_id = ?) AND ("
        " contains(lower(coalesce(profile_name, '')), ?)"
        " OR contains(lower(coalesce(bsuid, '')), ?)"
        " OR contains(lower(chat), ?)"
        " OR contains(coalesce(phone, ''), ?)"
        " OR (? <> '' AND contains(regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g'), ?)))"
        " ORDER BY last_seen DESC, chat LIMIT ?",
        [phone_number_id, phone_number_id, needle, needle, needle, needle, digits, digits, limit],
    )
    return [Contact(**row) for row in rows]


def get_turn(cur: DuckDBPyConnection, turn_id: str) -> TurnRecord | None:
    row = _one(cur, f"SELECT {_TURN_COLUMNS} FROM turns WHERE turn_id = ?", [turn_id])  # noqa: S608
    return TurnRecord(**row) if row is not None else None


def list_turns(cur: DuckDBPyConnection, chat: str, limit: int) -> list[TurnRecord]:
    """The chat's last `limit` turns, oldest first."""
    rows = _rows(
        cur,
        f"SELECT {_TURN_COLUMNS} FROM turns WHERE chat = ?"  # noqa: S608
        " ORDER BY started_at DESC, turn_id DESC LIMIT ?",
        [chat, limit],
    )
    return [TurnRecord(**row) for row in reversed(rows)]


def list_tool_calls(cur: DuckDBPyConnection, turn_id: str) -> list[ToolCallRecord]:
    """The turn's tool calls, in order."""
    rows = _rows(
        cur,
        "SELECT turn_id, idx, call_id, name, arguments, result, status FROM tool_calls"
        " WHERE turn_id = ? ORDER BY idx",
        [turn_id],
    )
    return [ToolCallRecord(**row) for row in rows]


def get_outbound(cur: DuckDBPyConnection, outbound_id: str) -> OutboundRecord | None:
    row = _one(cur, "SELECT * FROM outbound WHERE outbound_id = ?", [outbound_id])
    return outbound_from_row(row) if row is not None else None


def pending_outbound(
    cur: DuckDBPyConnection, phone_number_id: str, limit: int
) -> list[OutboundRecord]:
    """Oldest first, parts of one reply in order."""
    rows = _rows(
        cur,
        "SELECT * FROM outbound WHERE phone_number_id = ? AND status = 'pending'"
        " ORDER BY created_at, part LIMIT ?",
        [phone_number_id, limit],
    )
    return [outbound_from_row(row) for row in rows]


def get_dead_letter(cur: DuckDBPyConnection, dead_letter_id: str) -> DeadLetter | None:
    row = _one(
        cur,
        f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = ?",  # noqa: S608
        [dead_letter_id],
    )
    return dead_letter_from_row(row) if row is not None else None


def list_dead_letters(
    cur: DuckDBPyConnection,
    limit: int,
    offset: int,
    include_replayed: bool,
    phone_number_id: str | None = None,
) -> list[DeadLetter]:
    """Newest first; only one business number's when given (a chat key starts with it)."""
    rows = _rows(
        cur,
        f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters"  # noqa: S608
        " WHERE (? OR replayed_at IS NULL)"
        " AND (?::VARCHAR IS NULL OR starts_with(chat, ? || ':'))"
        " ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
        [include_replayed, phone_number_id, phone_number_id, limit, offset],
    )
    return [dead_letter_from_row(row) for row in rows]


# Counting helpers (tests, metrics): table -> the filters a caller may use, all equality.
_COUNTABLE: dict[str, frozenset[str]] = {
    "messages": frozenset({"chat", "direction", "status", "turn_id", "outcome"}),
    "chats": frozenset({"agent", "handoff"}),
    "contacts": frozenset(),
    "turns": frozenset({"chat", "agent", "outcome"}),
    "jobs": frozenset({"kind", "chat", "enabled"}),
    "job_runs": frozenset({"job_id", "status"}),
    "tool_calls": frozenset({"turn_id", "name", "status"}),
    "sessions": frozenset(),
    "outbound": frozenset({"chat", "status", "phone_number_id"}),
    "dead_letters": frozenset({"outbound_id", "reason"}),
}


def count(cur: DuckDBPyConnection, table: str, **filters: Any) -> int:
    """Rows in `table` matching the equality `filters` (None matches NULL)."""
    allowed = _COUNTABLE.get(table)
    if allowed is None:
        raise ValueError(f"cannot count {table!r}; one of {sorted(_COUNTABLE)}")
    unknown = set(filters) - allowed
    if unknown:
        raise ValueError(f"cannot filter {table} by {sorted(unknown)}")
    clauses = [f"{name} IS NOT DISTINCT FROM ?" for name in filters]
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    row = cur.execute(f"SELECT count(*) FROM {table}{where}", list(filters.values())).fetchone()  # noqa: S608
    return int(row[0]) if row is not None else 0


def status_counts(cur: DuckDBPyConnection) -> StatusCounts:
    """Dead letters not replayed, and chats in handoff."""
    row = cur.execute(
        "SELECT (SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL),"
        " (SELECT count(*) FROM chats WHERE handoff)"
    ).fetchone()
    dead, handoffs = row if row else (0, 0)
    return StatusCounts(dead_letters=int(dead), handoffs=int(handoffs))
