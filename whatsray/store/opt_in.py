"""Opt-in of contacts to the built-in user-facing jobs (the morning greeting), migration 5.

A contact opts in or out by sending `/subscribe` or `/unsubscribe` (the `subscribe_greetings`
and `unsubscribe_greetings` tools, docs/tools.md); the scheduler's greeting job reads the list of
opted-in chats when it fires (docs/scheduler.md). `OptInMixin` adds the methods to `Store`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from duckdb import DuckDBPyConnection

from whatsray.whatsapp.events import ChatKey
from whatsray.whatsapp.messages import is_bsuid

__all__ = ["OptInMixin"]

T = TypeVar("T")


def set_opt_in(conn: DuckDBPyConnection, key: ChatKey, opted_in: bool, now: float) -> bool:
    """Set the flag, creating the contact when it is not known yet; returns whether it changed."""
    row = conn.execute("SELECT opted_in FROM contacts WHERE chat = ?", [str(key)]).fetchone()
    if row is not None:
        if bool(row[0]) == opted_in:
            return False
        conn.execute("UPDATE contacts SET opted_in = ? WHERE chat = ?", [opted_in, str(key)])
        return True
    phone = key.user if key.user.isdigit() else None
    bsuid = key.user if phone is None and is_bsuid(key.user) else None
    conn.execute(
        "INSERT INTO contacts (chat, phone_number_id, phone, bsuid, first_seen, last_seen,"
        " opted_in) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [str(key), key.phone_number_id, phone, bsuid, now, now, opted_in],
    )
    return opted_in  # a new contact is opted out unless it opts in


def opted_in_chats(cur: DuckDBPyConnection, phone_number_id: str | None) -> list[str]:
    rows = cur.execute(
        "SELECT chat FROM contacts WHERE opted_in"
        " AND (?::VARCHAR IS NULL OR phone_number_id = ?) ORDER BY chat",
        [phone_number_id, phone_number_id],
    ).fetchall()
    return [str(row[0]) for row in rows]


class OptInMixin:
    """`set_opt_in` and `opted_in_chats` of `Store` (its `_read`, `_write_op` and clock)."""

    _now: Callable[[], float]

    async def _read(self, fn: Callable[[DuckDBPyConnection], T]) -> T:
        raise NotImplementedError

    async def _write_op(self, op: Callable[[DuckDBPyConnection], T]) -> T:
        raise NotImplementedError

    async def set_opt_in(self, chat: ChatKey | str, opted_in: bool) -> bool:
        """Opt the chat's contact in or out of the built-in user-facing jobs (the contact is
        created when unknown). True when the flag changed."""
        if not isinstance(opted_in, bool):
            raise TypeError("opted_in must be a bool")
        key = chat if isinstance(chat, ChatKey) else ChatKey.parse(chat)
        now = self._now()
        return await self._write_op(lambda conn: set_opt_in(conn, key, opted_in, now))

    async def opted_in_chats(self, phone_number_id: str | None = None) -> list[str]:
        """The chats (canonical keys) whose contact opted in, of one business number or of all
        (None), sorted."""
        return await self._read(lambda cur: opted_in_chats(cur, phone_number_id))
