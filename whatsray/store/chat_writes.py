"""Writes about conversations: inbound messages, contacts, chats, turns, sessions, and the
recording of outbound messages (a turn's replies). Each bulk kind applies a whole group of
writes in a few statements (see `writer.py`); each function runs on the writer thread.

SQL text here is built only from constants in this module (`rows_table` column lists); every
value travels as a parameter.
"""
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from duckdb import DuckDBPyConnection

from whatsray.outbox.ledger import OutboundItem
from whatsray.store.records import SessionSnapshot, ToolCallRecord, TurnRecord
from whatsray.store.rows import InboundRow, column_names, outbound_summary, rows_table
from whatsray.store.writer import WriteKind

__all__ = [
    "CONTACT",
    "INBOUND",
    "TURN_RESULTS",
    "ContactUpdate",
    "PreparedOutbound",
    "PreparedSession",
    "TurnResults",
    "update_chat",
]

CHAT_FIELDS = ("agent", "handoff", "last_inbound_at")


@dataclass(frozen=True, slots=True)
class ContactUpdate:
    chat: str
    phone_number_id: str
    phone: str | None
    bsuid: str | None
    profile_name: str | None
    seen_at: float


@dataclass(frozen=True, slots=True)
class PreparedOutbound:
    item: OutboundItem
    user: str  # the chat key's user, for a chat row the store has not seen yet
    body_json: str


@dataclass(frozen=True, slots=True)
class PreparedSession:
    snapshot: SessionSnapshot
    phone_number_id: str
    user: str
    state_json: str


@dataclass(frozen=True, slots=True)
class TurnResults:
    """Any of: a turn record (with its tool calls), outbound messages to record, a session
    snapshot; one result per outbound message (True: newly recorded). `record_outbound`,
    `record_turn` and `save_session` are this with one part."""

    now: float
    turn: TurnRecord | None = None
    inbound: tuple[InboundRow, ...] = ()  # the turn's inputs, stored with it
    outbound: tuple[PreparedOutbound, ...] = ()
    session: PreparedSession | None = None
    tool_calls: tuple[ToolCallRecord, ...] = ()  # the turn's, all of them (they replace any)


@dataclass(slots=True)
class _ChatTouch:
    phone_number_id: str
    user: str
    last_inbound_at: float | None
    now: float
    session: tuple[str | None, bool] | None = None  # (agent, handoff) a turn set, if any


def _touch(
    touches: dict[str, _ChatTouch],
    chat: str,
    phone_number_id: str,
    user: str,
    now: float,
    last_inbound_at: float | None = None,
) -> None:
    known = touches.get(chat)
    if known is None:
        touches[chat] = _ChatTouch(phone_number_id, user, last_inbound_at, now)
        return
    known.now = max(known.now, now)
    if last_inbound_at is not None:
        known.last_inbound_at = max(known.last_inbound_at or last_inbound_at, last_inbound_at)


def touch_chats(conn: DuckDBPyConnection, touches: dict[str, _ChatTouch]) -> None:
    """Create missing chat rows; move `updated_at` and the last inbound time forward only; set
    the agent and handoff flag a turn decided. One upsert for all the chats of a batch (a
    batched UPDATE ... FROM costs more, and more as the table grows)."""
    if not touches:
        return
    current = {
        chat: (agent, handoff)
        for chat, agent, handoff in conn.execute(
            "SELECT chat, agent, handoff FROM chats WHERE chat IN (SELECT unnest(?::VARCHAR[]))",
            [list(touches)],
        ).fetchall()
    }
    source, params = rows_table(
        [
            ("chat", "VARCHAR"),
            ("phone_number_id", "VARCHAR"),
            ("user_id", "VARCHAR"),
            ("last_inbound_at", "DOUBLE"),
            ("now", "DOUBLE"),
            ("agent", "VARCHAR"),
            ("handoff", "BOOLEAN"),
        ],
        [
            (c, t.phone_number_id, t.user, t.last_inbound_at, t.now, *agent_and_handoff)
            for c, t in touches.items()
            for agent_and_handoff in (t.session or current.get(c, (None, False)),)
        ],
    )
    conn.execute(
        "INSERT INTO chats (chat, phone_number_id, user_id, last_inbound_at, created_at,"
        " updated_at, agent, handoff) SELECT chat, phone_number_id, user_id, last_inbound_at,"
        f" now, now, agent, handoff FROM ({source}) ON CONFLICT (chat) DO UPDATE SET"
        " last_inbound_at = greatest(chats.last_inbound_at, excluded.last_inbound_at),"
        " updated_at = greatest(chats.updated_at, excluded.updated_at),"
        " agent = excluded.agent, handoff = excluded.handoff",
        params,
    )


def _upsert_contacts(conn: DuckDBPyConnection, updates: Sequence[ContactUpdate]) -> list[None]:
    """What is known about each user; a None never erases what an earlier message told us."""
    folded: dict[str, ContactUpdate] = {}
    first_seen: dict[str, float] = {}
    for u in updates:
        prev = folded.get(u.chat)
        first_seen[u.chat] = min(first_seen.get(u.chat, u.seen_at), u.seen_at)
        if prev is not None:
            u = ContactUpdate(
                u.chat,
                u.phone_number_id,
                u.phone or prev.phone,
                u.bsuid or prev.bsuid,
                u.profile_name or prev.profile_name,
                max(prev.seen_at, u.seen_at),
            )
        folded[u.chat] = u
    columns = [
        ("chat", "VARCHAR"),
        ("phone_number_id", "VARCHAR"),
        ("phone", "VARCHAR"),
        ("bsuid", "VARCHAR"),
        ("profile_name", "VARCHAR"),
        ("first_seen", "DOUBLE"),
        ("last_seen", "DOUBLE"),
    ]
    source, params = rows_table(
        columns,
        [
            (c, u.phone_number_id, u.phone, u.bsuid, u.profile_name, first_seen[c], u.seen_at)
            for c, u in folded.items()
        ],
    )
    conn.execute(
        f"INSERT INTO contacts ({column_names(columns)}) SELECT * FROM ({source})"
        " ON CONFLICT (chat) DO UPDATE SET"
        " phone = coalesce(excluded.phone, contacts.phone),"
        " bsuid = coalesce(excluded.bsuid, contacts.bsuid),"
        " profile_name = coalesce(excluded.profile_name, contacts.profile_name),"
        " first_seen = least(contacts.first_seen, excluded.first_seen),"
        " last_seen = greatest(contacts.last_seen, excluded.last_seen)",
        params,
    )
    return [None] * len(updates)


def insert_inbound_rows(conn: DuckDBPyConnection, rows: Sequence[InboundRow]) -> list[bool]:
    """Insert-if-absent keyed by wamid: False (and nothing written) for a message seen before,
    in the database or earlier in this group."""
    touches: dict[str, _ChatTouch] = {}
    inserted = insert_inbound(conn, rows, touches)
    touch_chats(conn, touches)
    return inserted


def insert_inbound(
    conn: DuckDBPyConnection,
    rows: Sequence[InboundRow],
    touches: dict[str, _ChatTouch],
    consumed: dict[str, Consumed] | None = None,
) -> list[bool]:
    """`insert_inbound_rows`, leaving the chat rows to the caller (`touches`: one upsert for the
    whole transaction). `consumed`: inputs stored already consumed by these turns, with their
    outcome; the others get their row's own outcome."""
    consumed = consumed or {}
    first: dict[str, int] = {}
    for i, row in enumerate(rows):
        first.setdefault(row.message_id, i)
    unique = [rows[i] for i in first.values()]
    source, params = rows_table(
        [
            ("id", "VARCHAR"),
            ("chat", "VARCHAR"),
            ("type", "VARCHAR"),
            ("text", "VARCHAR"),
            ("raw", "VARCHAR"),
            ("written_at", "DOUBLE"),
            ("received_at", "DOUBLE"),
            ("wamid", "VARCHAR"),
            ("turn_id", "VARCHAR"),
            ("outcome", "VARCHAR"),
            ("outcome_ref", "VARCHAR"),
        ],
        [
            (
                r.message_id,
                r.chat,
                r.type,
                r.text,
                r.raw,
                r.at,
                r.received_at,
                _wamid(r),
                *_consumed_or_own(r, consumed.get(r.message_id)),
            )
            for r in unique
        ],
    )
    # seq (arrival order) comes from the sequence in source order.
    inserted = {
        row[0]
        for row in conn.execute(
            "INSERT INTO messages (id, chat, direction, type, text, raw, wamid, status,"
            " created_at, updated_at, turn_id, outcome, outcome_ref) SELECT id, chat, 'in',"
            " type, text, raw, wamid, 'received', written_at, received_at, turn_id, outcome,"
            f" outcome_ref FROM ({source}) ON CONFLICT DO NOTHING RETURNING id",
            params,
        ).fetchall()
    }
    new = [r for r in unique if r.message_id in inserted]
    if new:
        for r in new:
            # A scheduled input is not the user writing: the chat exists, the window stays.
            written = None if r.scheduled else r.at
            _touch(touches, r.chat, r.phone_number_id, r.user, r.received_at, written)
        contacts = [
            ContactUpdate(r.chat, r.phone_number_id, r.phone, r.bsuid, r.profile_name, r.at)
            for r in new
            if not r.scheduled and r.update_contact
        ]
        if contacts:
            _upsert_contacts(conn, contacts)
    return [first[r.message_id] == i and r.message_id in inserted for i, r in enumerate(rows)]


def _wamid(row: InboundRow) -> str | None:
    return None if row.scheduled else row.message_id


@dataclass(frozen=True, slots=True)
class Consumed:
    """What a turn made of one of its inputs: its id and the input's outcome."""

    turn_id: str
    outcome: str  # answered, coalesced or handed_off


def consumed_inputs(turns: Sequence[TurnRecord]) -> dict[str, Consumed]:
    """The outcome of each turn's inputs: the newest is answered (or handed off, when the turn
    handed the chat to a person), the earlier ones were coalesced into the same turn."""
    out: dict[str, Consumed] = {}
    for turn in turns:
        last = len(turn.input_ids) - 1
        for index, message_id in enumerate(turn.input_ids):
            if index < last:
                outcome = "coalesced"
            else:
                outcome = "handed_off" if turn.outcome == "handoff" else "answered"
            out[message_id] = Consumed(turn.turn_id, outcome)
    return out


def _consumed_or_own(
    row: InboundRow, consumed: Consumed | None
) -> tuple[str | None, str, str | None]:
    """(turn_id, outcome, outcome_ref) of a row about to be inserted."""
    if consumed is None:
        return None, row.outcome, row.outcome_ref
    return consumed.turn_id, consumed.outcome, consumed.turn_id


def insert_outbound(
    conn: DuckDBPyConnection, outbound: Sequence[PreparedOutbound], now: float
) -> set[str]:
    """Record pending outbound messages (ledger and chat history); the ids that were new."""
    if not outbound:
        return set()
    source, params = rows_table(
        [
            ("outbound_id", "VARCHAR"),
            ("chat", "VARCHAR"),
            ("phone_number_id", "VARCHAR"),
            ("recipient", "VARCHAR"),
            ("body", "VARCHAR"),
            ("turn_id", "VARCHAR"),
            ("part", "INTEGER"),
            ("created_at", "DOUBLE"),
            ("purpose", "VARCHAR"),
        ],
        [
            (
                o.item.outbound_id,
                o.item.chat,
                o.item.phone_number_id,
                o.item.to,
                o.body_json,
                o.item.turn_id,
                o.item.part,
                o.item.created_at,
                o.item.purpose,
            )
            for o in outbound
        ],
    )
    inserted = {
        row[0]
        for row in conn.execute(
            "INSERT INTO outbound (outbound_id, chat, phone_number_id, recipient, body, turn_id,"
            " part, status, created_at, updated_at, purpose) SELECT outbound_id, chat,"
            " phone_number_id, recipient, body, turn_id, part, 'pending', created_at, ?, purpose"
            f" FROM ({source})"
            " ON CONFLICT DO NOTHING RETURNING outbound_id",
            [now, *params],
        ).fetchall()
    }
    messages: list[tuple[Any, ...]] = []
    for o in outbound:
        if o.item.outbound_id in inserted:
            item = o.item
            type_, text = outbound_summary(item.body)
            created = item.created_at or now
            messages.append(
                (item.outbound_id, item.chat, type_, text, o.body_json, item.turn_id, created)
            )
    if messages:
        source, params = rows_table(
            [
                ("id", "VARCHAR"),
                ("chat", "VARCHAR"),
                ("type", "VARCHAR"),
                ("text", "VARCHAR"),
                ("raw", "VARCHAR"),
                ("turn_id", "VARCHAR"),
                ("created_at", "DOUBLE"),
            ],
            messages,
        )
        conn.execute(
            "INSERT INTO messages (id, chat, direction, type, text, raw, status, turn_id,"
            " created_at, updated_at) SELECT id, chat, 'out', type, text, raw, 'pending',"
            f" turn_id, created_at, ? FROM ({source})",  # new in the ledger: new here too
            [now, *params],
        )
    return inserted


def _record_turn_results(
    conn: DuckDBPyConnection, groups: Sequence[TurnResults]
) -> list[list[bool]]:
    """A batch of turns in a few statements whatever its size (docs/store.md, "Writes"):
    inputs inserted already consumed, one upsert for the chats, turns inserted (replaced only
    when retried), replies recorded, session rows only where there is more to keep than the
    chat row holds."""
    now = max(g.now for g in groups)
    touches: dict[str, _ChatTouch] = {}
    turns = {g.turn.turn_id: g.turn for g in groups if g.turn is not None}  # the last one wins
    consumed = consumed_inputs(list(turns.values()))

    # Inputs first, stored as consumed by their turn.
    inbound = [row for g in groups for row in g.inbound]
    fresh_inputs: set[str] = set()
    if inbound:
        flags = insert_inbound(conn, inbound, touches, consumed)
        fresh_inputs = {row.message_id for row, new in zip(inbound, flags, strict=True) if new}

    # Replies: the first occurrence of an id in the group is the one that may be new.
    seen: set[str] = set()
    fresh: list[PreparedOutbound] = []
    for g in groups:
        for o in g.outbound:
            if o.item.outbound_id not in seen:
                seen.add(o.item.outbound_id)
                fresh.append(o)
    inserted = insert_outbound(conn, fresh, now)
    for o in fresh:
        if o.item.outbound_id in inserted:
            _touch(touches, o.item.chat, o.item.phone_number_id, o.user, now)
    results: list[list[bool]] = []
    claimed: set[str] = set()
    for g in groups:
        flags = []
        for o in g.outbound:
            oid = o.item.outbound_id
            flags.append(oid in inserted and oid not in claimed)
            claimed.add(oid)
        results.append(flags)

    if turns:
        _write_turns(
            conn,
            list(turns.values()),
            {g.turn.turn_id: g.tool_calls for g in groups if g.turn is not None},
        )
        # Inputs stored before their turn (a handoff, a retry) are marked consumed now.
        earlier = {mid: tid for mid, tid in consumed.items() if mid not in fresh_inputs}
        if earlier:
            _mark_consumed(conn, earlier, turns)

    # Sessions: the last snapshot of each chat wins.
    sessions = {g.session.snapshot.chat: g.session for g in groups if g.session is not None}
    for s in sessions.values():
        snap = s.snapshot
        _touch(touches, snap.chat, s.phone_number_id, s.user, now, snap.last_inbound_at)
        touches[snap.chat].session = (snap.agent, snap.handoff)
    touch_chats(conn, touches)
    kept = [s for s in sessions.values() if s.snapshot.summary is not None or s.snapshot.state]
    if kept:
        _replace_sessions(conn, kept, now)
    return results


def _write_turns(
    conn: DuckDBPyConnection,
    turns: list[TurnRecord],
    calls: dict[str, tuple[ToolCallRecord, ...]],
) -> None:
    """Insert the turns; a turn id stored before (a retried turn) is replaced, with its tool
    calls. A retry is rare: the common batch is one probe and one plain insert."""
    known = {
        turn_id
        for (turn_id,) in conn.execute(
            "SELECT turn_id FROM turns WHERE turn_id IN (SELECT unnest(?::VARCHAR[]))",
            [[t.turn_id for t in turns]],
        ).fetchall()
    }
    if known:
        conn.execute(
            "DELETE FROM turns WHERE turn_id IN (SELECT unnest(?::VARCHAR[]))", [sorted(known)]
        )
        conn.execute(
            "DELETE FROM tool_calls WHERE turn_id IN (SELECT unnest(?::VARCHAR[]))",
            [sorted(known)],
        )
    _insert_turns(conn, turns)
    _insert_tool_calls(conn, {t: c for t, c in calls.items() if c})


def _insert_turns(conn: DuckDBPyConnection, turns: list[TurnRecord]) -> None:
    columns = [
        ("turn_id", "VARCHAR"),
        ("chat", "VARCHAR"),
        ("agent", "VARCHAR"),
        ("engine", "VARCHAR"),
        ("input_ids", "VARCHAR[]"),
        ("reply_ids", "VARCHAR[]"),
        ("tokens_in", "BIGINT"),
        ("tokens_out", "BIGINT"),
        ("latency_ms", "DOUBLE"),
        ("outcome", "VARCHAR"),
        ("error", "VARCHAR"),
        ("started_at", "DOUBLE"),
        ("finished_at", "DOUBLE"),
        ("agent_outcome", "VARCHAR"),
    ]
    source, params = rows_table(
        columns,
        [
            (
                t.turn_id,
                t.chat,
                t.agent,
                t.engine,
                list(t.input_ids),
                list(t.reply_ids),
                t.tokens_in,
                t.tokens_out,
                t.latency_ms,
                t.outcome,
                t.error,
                t.started_at,
                t.finished_at,
                t.agent_outcome,
            )
            for t in turns
        ],
    )
    names = column_names(columns)
    conn.execute(f"INSERT INTO turns ({names}) SELECT * FROM ({source})", params)


def _mark_consumed(
    conn: DuckDBPyConnection, consumed: dict[str, Consumed], turns: dict[str, TurnRecord]
) -> None:
    source, params = rows_table(
        [("id", "VARCHAR"), ("chat", "VARCHAR"), ("turn_id", "VARCHAR"), ("outcome", "VARCHAR")],
        [(mid, turns[c.turn_id].chat, c.turn_id, c.outcome) for mid, c in consumed.items()],
    )
    conn.execute(
        "UPDATE messages SET turn_id = u.turn_id, outcome = u.outcome, outcome_ref = u.turn_id"
        f" FROM ({source}) u"
        " WHERE messages.id = u.id AND messages.chat = u.chat AND messages.direction = 'in'",
        params,
    )


def _insert_tool_calls(
    conn: DuckDBPyConnection, calls: dict[str, tuple[ToolCallRecord, ...]]
) -> None:
    columns = [
        ("turn_id", "VARCHAR"),
        ("idx", "INTEGER"),
        ("call_id", "VARCHAR"),
        ("name", "VARCHAR"),
        ("arguments", "VARCHAR"),
        ("result", "VARCHAR"),
        ("status", "VARCHAR"),
    ]
    rows = [
        (turn_id, c.idx, c.call_id, c.name, c.arguments, c.result, c.status)
        for turn_id, records in calls.items()
        for c in records
    ]
    if rows:
        source, params = rows_table(columns, rows)
        names = column_names(columns)
        conn.execute(f"INSERT INTO tool_calls ({names}) SELECT * FROM ({source})", params)


def _replace_sessions(
    conn: DuckDBPyConnection, sessions: list[PreparedSession], now: float
) -> None:
    # The chat row holds agent and handoff (`touch_chats`); the session row what is left.
    source, params = rows_table(
        [("chat", "VARCHAR"), ("summary", "VARCHAR"), ("state", "VARCHAR")],
        [(s.snapshot.chat, s.snapshot.summary, s.state_json) for s in sessions],
    )
    conn.execute(
        "INSERT OR REPLACE INTO sessions (chat, summary, state, updated_at)"
        f" SELECT chat, summary, state, ? FROM ({source})",
        [now, *params],
    )


def update_chat(
    conn: DuckDBPyConnection,
    chat: str,
    phone_number_id: str,
    user: str,
    fields: dict[str, Any],
    now: float,
) -> None:
    """Set the given chat fields (names from `CHAT_FIELDS` only), creating the chat if needed."""
    unknown = set(fields) - set(CHAT_FIELDS)
    if unknown:
        raise ValueError(f"unknown chat fields: {sorted(unknown)}")
    touch_chats(conn, {chat: _ChatTouch(phone_number_id, user, None, now)})
    if not fields:
        return
    names = list(fields)
    assignments = ", ".join(f"{name} = ?" for name in names)  # names are whitelisted above
    conn.execute(
        f"UPDATE chats SET {assignments}, updated_at = ? WHERE chat = ?",
        [*(fields[name] for name in names), now, chat],
    )


INBOUND: WriteKind[InboundRow, bool] = WriteKind("inbound", 10, insert_inbound_rows)
CONTACT: WriteKind[ContactUpdate, None] = WriteKind("contact", 15, _upsert_contacts)
TURN_RESULTS: WriteKind[TurnResults, list[bool]] = WriteKind(
    "turn_results", 20, _record_turn_results
)
