"""Conversation analytics over the store (docs/analytics.md): a summary of a time range, the same
figures per UTC day, and the tables exported as Parquet (DuckDB's `COPY ... TO`).

The functions take a DuckDB cursor, so the same code runs on the running store (`AnalyticsMixin`,
on a cursor and thread of its own: a long query never queues the hot path's reads behind it) and
on a stopped platform's file opened read-only (`whatsray analytics --db`).

Definitions (docs/analytics.md, "What the numbers mean"):

- a *user message* is an inbound message with a wamid (a scheduled run's input has none), in a
  chat that is not an operator's (a chat the handoff desk sends `handoff_notice`s to);
- a *conversation* is one 24-hour customer-service window: a chat's run of user messages with no
  gap of 24 h or more. It starts at its first message and closes 24 h after its last;
- it is *handed off* when, between its start and its close, a turn handed it to a person, a
  user message was recorded `handed_off`, or the business answered from its app (an echo);
  *contained*: closed without a handoff;
- *time to first reply*: per turn, from its first input to its first reply recorded to the
  user (reminders excluded); *time to a human reply*: from a conversation's first handoff to the
  first message a person sent the user (relayed by the desk, sent through the admin API, or an
  echo);
- *FAQ unknown*: turns the agent answered with its `unknown_reply` (`agent_outcome` =
  `no_knowledge`), over all turns of the agents that ever did;
- *windows unanswered*: conversations that closed (by `now`) with no reply after the user's
  last message; counted on the day they closed. Everything else counts on the day it started.
"""
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from duckdb import DuckDBPyConnection

from whatsray.store.errors import StoreClosedError

__all__ = [
    "DAY_S",
    "EXPORT_TABLES",
    "AnalyticsMixin",
    "daily",
    "export_parquet",
    "summary",
]

T = TypeVar("T")
DAY_S = 86400.0
WINDOW_S = 86400.0

# Each table's export: its columns (messages without `raw`) and the time column the range
# filters on (None: not filtered by time). The chat column filters by business number.
EXPORT_TABLES: dict[str, tuple[str, str | None]] = {
    "contacts": ("SELECT * FROM contacts WHERE {number}", None),
    "chats": ("SELECT * FROM chats WHERE {number}", None),
    "messages": (
        "SELECT id, seq, chat, direction, type, text, wamid, status, status_history, turn_id,"
        " outcome, outcome_ref, created_at, updated_at FROM messages WHERE {number} AND {range}",
        "created_at",
    ),
    "turns": ("SELECT * FROM turns WHERE {number} AND {range}", "started_at"),
    "tool_calls": (
        "SELECT c.* FROM tool_calls c JOIN turns t USING (turn_id) WHERE {number} AND {range}",
        "t.started_at",
    ),
    "outbound": ("SELECT * FROM outbound WHERE {number} AND {range}", "created_at"),
    "dead_letters": ("SELECT * FROM dead_letters WHERE {number} AND {range}", "created_at"),
}
EXPORTS = (*EXPORT_TABLES, "daily")

# Common parts. Parameters: $pn (business number or NULL), $from, $to, $now.
_NUMBER = "($pn::VARCHAR IS NULL OR split_part({chat}, ':', 1) = $pn)"
_OPERATORS = "SELECT DISTINCT chat FROM outbound WHERE purpose = 'handoff_notice'"
_USER_MESSAGES = (
    "SELECT chat, created_at AS ts FROM messages WHERE direction = 'in' AND wamid IS NOT NULL"
    f" AND {_NUMBER.format(chat='chat')} AND chat NOT IN ({_OPERATORS})"
)
# Conversations starting from `$from - 24 h`: enough to tell whether a message in the range
# starts one (a gap of 24 h or more before it), and every later message to find its close.
_CONVERSATIONS = f"""
user_messages AS ({_USER_MESSAGES} AND created_at >= $from - {WINDOW_S}),
marked AS (
    SELECT chat, ts, CASE WHEN ts - lag(ts) OVER w < {WINDOW_S} THEN 0 ELSE 1 END AS starts
    FROM user_messages WINDOW w AS (PARTITION BY chat ORDER BY ts)
),
numbered AS (
    SELECT chat, ts, sum(starts) OVER (PARTITION BY chat ORDER BY ts ROWS UNBOUNDED PRECEDING)
        AS n FROM marked
),
convs AS (
    SELECT chat, n, min(ts) AS started_at, max(ts) AS last_in, max(ts) + {WINDOW_S} AS closes_at
    FROM numbered GROUP BY chat, n
),
echoes AS (
    SELECT m.chat, m.created_at AS ts FROM messages m
    WHERE m.direction = 'out' AND NOT EXISTS (SELECT 1 FROM outbound o WHERE o.outbound_id = m.id)
),
handoffs AS (
    SELECT chat, created_at AS ts FROM messages WHERE direction = 'in' AND outcome = 'handed_off'
    UNION ALL SELECT chat, started_at FROM turns WHERE outcome = 'handoff'
    UNION ALL SELECT chat, ts FROM echoes
),
humans AS (
    SELECT chat, created_at AS ts FROM outbound
    WHERE outbound_id LIKE 'handoff:%:relay:%' OR outbound_id LIKE 'admin:%'
    UNION ALL SELECT chat, ts FROM echoes
),
conv_handoff AS (
    SELECT c.chat, c.n, min(h.ts) AS handoff_at FROM convs c
    JOIN handoffs h ON h.chat = c.chat AND h.ts >= c.started_at AND h.ts < c.closes_at
    GROUP BY c.chat, c.n
),
conv_human AS (
    SELECT ch.chat, ch.n, min(hu.ts) - ch.handoff_at AS human_s FROM conv_handoff ch
    JOIN convs c USING (chat, n)
    JOIN humans hu ON hu.chat = ch.chat AND hu.ts >= ch.handoff_at AND hu.ts < c.closes_at
    GROUP BY ch.chat, ch.n, ch.handoff_at
)"""


def _bucket(column: str, daily: bool) -> str:
    return f"floor({column} / {DAY_S}) * {DAY_S}" if daily else "0.0"


def _range(column: str) -> str:
    return f"{column} >= $from AND {column} < $to"


def _queries(daily: bool) -> dict[str, str]:
    """Each figure group's query: rows of (bucket, values...)."""
    b = _bucket
    turn_number = _NUMBER.format(chat="t.chat")
    return {
        "conversations": f"""WITH {_CONVERSATIONS}
            SELECT {b("c.started_at", daily)} AS bucket, count(*),
                count(*) FILTER (WHERE c.closes_at <= $now),
                count(h.chat),
                count(*) FILTER (WHERE c.closes_at <= $now AND h.chat IS NULL),
                quantile_cont(hu.human_s, 0.5)
            FROM convs c LEFT JOIN conv_handoff h USING (chat, n)
            LEFT JOIN conv_human hu USING (chat, n)
            WHERE {_range("c.started_at")} GROUP BY bucket""",
        "unanswered": f"""WITH {_CONVERSATIONS}
            SELECT {b("c.closes_at", daily)} AS bucket, count(*) FROM convs c
            WHERE {_range("c.closes_at")} AND c.closes_at <= $now AND NOT EXISTS (
                SELECT 1 FROM messages o WHERE o.chat = c.chat AND o.direction = 'out'
                AND coalesce(o.status, '') NOT IN ('failed', 'dead')
                AND o.created_at >= c.last_in AND o.created_at < c.closes_at)
            GROUP BY bucket""",
        "messages": f"""SELECT {b("created_at", daily)} AS bucket,
                count(*) FILTER (WHERE direction = 'in' AND wamid IS NOT NULL),
                count(*) FILTER (WHERE direction = 'out')
            FROM messages WHERE {_range("created_at")} AND {_NUMBER.format(chat="chat")}
                AND chat NOT IN ({_OPERATORS}) GROUP BY bucket""",
        "turns": f"""WITH faq AS (
                SELECT DISTINCT agent FROM turns WHERE agent_outcome = 'no_knowledge')
            SELECT {b("t.started_at", daily)} AS bucket, count(*),
                count(*) FILTER (WHERE t.agent IN (SELECT agent FROM faq)),
                count(*) FILTER (WHERE t.agent_outcome = 'no_knowledge')
            FROM turns t WHERE {_range("t.started_at")} AND {turn_number} GROUP BY bucket""",
        "first_reply": f"""WITH firsts AS (
                SELECT t.turn_id, t.started_at, min(o.created_at) - t.started_at AS s
                FROM turns t JOIN outbound o ON o.turn_id = t.turn_id AND o.chat = t.chat
                WHERE {_range("t.started_at")} AND {turn_number}
                    AND coalesce(o.purpose, '') <> 'reminder'
                GROUP BY t.turn_id, t.started_at)
            SELECT {b("started_at", daily)} AS bucket, count(*), quantile_cont(s, 0.5),
                quantile_cont(s, 0.9) FROM firsts GROUP BY bucket""",
        "dead_letters": f"""SELECT {b("created_at", daily)} AS bucket, count(*)
            FROM dead_letters WHERE {_range("created_at")} AND {_NUMBER.format(chat="chat")}
            GROUP BY bucket""",
        "template_fallbacks": f"""SELECT {b("created_at", daily)} AS bucket, count(*)
            FROM outbound WHERE outbound_id LIKE '%:template' AND {_range("created_at")}
                AND {_NUMBER.format(chat="chat")} GROUP BY bucket""",
        "opt_ins": f"""SELECT {b("t.started_at", daily)} AS bucket,
                count(*) FILTER (WHERE c.name = 'subscribe_greetings'),
                count(*) FILTER (WHERE c.name = 'unsubscribe_greetings')
            FROM tool_calls c JOIN turns t USING (turn_id)
            WHERE c.status = 'ok' AND {_range("t.started_at")} AND {turn_number}
            GROUP BY bucket""",
    }


_COLUMNS = {
    "conversations": (
        "conversations",
        "conversations_closed",
        "handed_off",
        "contained",
        "human_reply_median_s",
    ),
    "unanswered": ("windows_unanswered",),
    "messages": ("inbound", "outbound"),
    "turns": ("turns", "faq_turns", "faq_unknown"),
    "first_reply": ("replied_turns", "first_reply_median_s", "first_reply_p90_s"),
    "dead_letters": ("dead_letters",),
    "template_fallbacks": ("template_fallbacks",),
    "opt_ins": ("opt_ins", "opt_outs"),
}
_MAYBE_NONE = {"human_reply_median_s", "first_reply_median_s", "first_reply_p90_s"}


def check_range(start: float, end: float) -> None:
    for name, value in (("from", start), ("to", end)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite time in unix seconds, got {value!r}")
    if start >= end:
        raise ValueError(f"from ({start:g}) must be before to ({end:g})")


def _params(start: float, end: float, number: str | None, now: float) -> dict[str, Any]:
    check_range(start, end)
    return {"pn": number, "from": start, "to": end, "now": now}


def _empty() -> dict[str, Any]:
    return {
        name: (None if name in _MAYBE_NONE else 0) for cols in _COLUMNS.values() for name in cols
    }


def _rates(figures: dict[str, Any]) -> dict[str, Any]:
    closed, started = figures["conversations_closed"], figures["conversations"]
    figures["containment_rate"] = _ratio(figures["contained"], closed)
    figures["handoff_rate"] = _ratio(figures["handed_off"], started)
    figures["faq_unknown_rate"] = _ratio(figures["faq_unknown"], figures["faq_turns"])
    return figures


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _collect(cur: DuckDBPyConnection, params: dict[str, Any], daily: bool) -> dict[float, Any]:
    buckets: dict[float, dict[str, Any]] = {}
    for group, sql in _queries(daily).items():
        for bucket, *values in cur.execute(sql, _used(sql, params)).fetchall():
            figures = buckets.setdefault(float(bucket), _empty())
            for name, value in zip(_COLUMNS[group], values, strict=True):
                figures[name] = _number(value)
    return buckets


def _used(sql: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters `sql` names (DuckDB refuses any more)."""
    return {name: value for name, value in params.items() if f"${name}" in sql}


def _number(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    return value


def summary(
    cur: DuckDBPyConnection, start: float, end: float, number: str | None, now: float
) -> dict[str, Any]:
    """The figures of [start, end), with their breakdowns (see the module doc)."""
    params = _params(start, end, number, now)
    figures = _rates(_collect(cur, params, daily=False).get(0.0, _empty()))
    turn_number = _NUMBER.format(chat="chat")
    by_agent = cur.execute(
        "SELECT coalesce(agent, '(none)') AS a, count(*),"
        " count(*) FILTER (WHERE agent_outcome = 'no_knowledge'),"
        " count(*) FILTER (WHERE outcome = 'handoff')"
        f" FROM turns WHERE {_range('started_at')} AND {turn_number} GROUP BY a ORDER BY a",
        _used("$pn $from $to", params),
    ).fetchall()
    reasons = cur.execute(
        "SELECT reason, count(*) FROM dead_letters"
        f" WHERE {_range('created_at')} AND {turn_number} GROUP BY reason ORDER BY reason",
        _used("$pn $from $to", params),
    ).fetchall()
    purposes = cur.execute(
        "SELECT coalesce(purpose, 'reply') AS p, count(*) FROM outbound"
        f" WHERE outbound_id LIKE '%:template' AND {_range('created_at')} AND {turn_number}"
        " GROUP BY p ORDER BY p",
        _used("$pn $from $to", params),
    ).fetchall()
    opted = cur.execute(
        "SELECT count(*) FROM contacts WHERE opted_in AND ($pn::VARCHAR IS NULL"
        " OR phone_number_id = $pn)",
        {"pn": number},
    ).fetchone()
    return {
        "from": start,
        "to": end,
        "phone_number_id": number,
        **figures,
        "turns_by_agent": [
            {"agent": a, "turns": n, "faq_unknown": u, "handoffs": h} for a, n, u, h in by_agent
        ],
        "dead_letters_by_reason": dict(reasons),
        "template_fallbacks_by_purpose": dict(purposes),
        "opted_in_now": opted[0] if opted else 0,
    }


def daily(
    cur: DuckDBPyConnection, start: float, end: float, number: str | None, now: float
) -> dict[str, Any]:
    """The figures per UTC day of [start, end): every day, empty ones included."""
    params = _params(start, end, number, now)
    buckets = _collect(cur, params, daily=True)
    first = math.floor(start / DAY_S) * DAY_S
    days = []
    day = first
    while day < end:
        date = datetime.fromtimestamp(day, UTC).date().isoformat()
        days.append({"day": date, "day_start": day, **_rates(buckets.get(day, _empty()))})
        day += DAY_S
    return {"from": start, "to": end, "phone_number_id": number, "days": days}


def _export_sql(table: str, bounded: bool) -> str:
    if table not in EXPORT_TABLES:
        raise ValueError(f"unknown table {table!r}; export one of {', '.join(EXPORTS)}")
    sql, time_column = EXPORT_TABLES[table]
    chat = "t.chat" if table == "tool_calls" else "chat"
    in_range = _range(time_column) if bounded and time_column else "true"
    return sql.format(number=_NUMBER.format(chat=chat), range=in_range)


def export_parquet(
    cur: DuckDBPyConnection,
    table: str,
    start: float | None,
    end: float | None,
    number: str | None,
    now: float,
) -> bytes:
    """One table (or `daily`, the daily series) as Parquet bytes, made by DuckDB's `COPY ...
    TO` into a temporary file. A range filters the tables with a time (see `EXPORT_TABLES`)."""
    bounded = start is not None and end is not None
    if (start is None) != (end is None):
        raise ValueError("give both from and to, or neither")
    handle, name = tempfile.mkstemp(prefix="whatsray-export-", suffix=".parquet")
    os.close(handle)
    path = Path(name)
    try:
        if table == "daily":
            if start is None or end is None:
                raise ValueError("the daily series needs from and to")
            days = daily(cur, start, end, number, now)["days"]
            _copy_rows(cur, days, path)
        else:
            sql = _export_sql(table, bounded)
            params: dict[str, Any] = {"pn": number}
            if bounded:
                assert start is not None and end is not None
                check_range(start, end)
                params.update({"from": start, "to": end})
            # The path is ours (mkstemp): quoted, never a parameter (COPY takes none there).
            target = str(path).replace("'", "''")
            cur.execute(f"COPY ({sql}) TO '{target}' (FORMAT parquet)", _used(sql, params))
        return path.read_bytes()
    finally:
        path.unlink(missing_ok=True)


def _copy_rows(cur: DuckDBPyConnection, days: list[dict[str, Any]], path: Path) -> None:
    """The daily series (at least one day: the range is never empty) through DuckDB's COPY."""
    names = list(days[0])
    columns = ", ".join(f'"{n}"' for n in names)
    values = ", ".join(["(" + ", ".join("?" * len(names)) + ")"] * len(days))
    typed = ", ".join(f'"{n}"::{_sql_type(days, n)} AS "{n}"' for n in names)
    sql = f"SELECT {typed} FROM (VALUES {values}) v({columns})"
    target = str(path).replace("'", "''")
    flat = [day[n] for day in days for n in names]
    cur.execute(f"COPY ({sql}) TO '{target}' (FORMAT parquet)", flat)


def _sql_type(days: list[dict[str, Any]], name: str) -> str:
    values = [d[name] for d in days if d[name] is not None]
    if values and isinstance(values[0], str):
        return "VARCHAR"
    if all(isinstance(v, int) for v in values) and name not in _MAYBE_NONE and "rate" not in name:
        return "BIGINT"
    return "DOUBLE"


class AnalyticsMixin:
    """The analytics reads of `Store`, on a cursor and a thread of their own: a summary over a
    big store takes a while, and the session hosts' reads must not wait behind it."""

    _now: Callable[[], float]
    _open: bool
    _analytics_cursor: DuckDBPyConnection | None = None
    _analytics_pool: ThreadPoolExecutor | None = None

    async def _write_op(self, op: Callable[[DuckDBPyConnection], T]) -> T:
        raise NotImplementedError

    async def _analytics(self, fn: Callable[[DuckDBPyConnection], T]) -> T:
        if not self._open:
            raise StoreClosedError("the store is not open")
        if self._analytics_cursor is None:
            # Made on the writer thread, which owns the connection (cursor(): a new connection
            # to the same database, safe to use from another thread).
            cursor = await self._write_op(lambda conn: conn.cursor())
            if self._analytics_cursor is None:
                self._analytics_pool = ThreadPoolExecutor(1, "whatsray-store-analytics")
                self._analytics_cursor = cursor
            else:
                cursor.close()
        pool, cursor = self._analytics_pool, self._analytics_cursor
        assert pool is not None
        return await asyncio.get_running_loop().run_in_executor(pool, fn, cursor)

    async def _close_analytics(self) -> None:
        """Before the store closes: wait for the queries in flight, close the cursor."""
        pool, cursor = self._analytics_pool, self._analytics_cursor
        self._analytics_pool = self._analytics_cursor = None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True)
        if cursor is not None:
            with contextlib.suppress(Exception):
                cursor.close()

    async def analytics_summary(
        self, start: float, end: float, phone_number_id: str | None = None
    ) -> dict[str, Any]:
        """The summary of [start, end) (unix seconds), of one business number or all."""
        check_range(start, end)
        now = self._now()
        return await self._analytics(lambda cur: summary(cur, start, end, phone_number_id, now))

    async def analytics_daily(
        self, start: float, end: float, phone_number_id: str | None = None
    ) -> dict[str, Any]:
        """The same figures per UTC day."""
        check_range(start, end)
        now = self._now()
        return await self._analytics(lambda cur: daily(cur, start, end, phone_number_id, now))

    async def export_table(
        self,
        table: str,
        start: float | None = None,
        end: float | None = None,
        phone_number_id: str | None = None,
    ) -> bytes:
        """`table` (one of `EXPORTS`) as Parquet bytes."""
        if table not in EXPORTS:
            raise ValueError(f"unknown table {table!r}; export one of {', '.join(EXPORTS)}")
        now = self._now()
        return await self._analytics(
            lambda cur: export_parquet(cur, table, start, end, phone_number_id, now)
        )
