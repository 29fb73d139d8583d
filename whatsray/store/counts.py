"""Row counts of the store, for tests, metrics and `GET /api/status`. `CountsMixin` adds the
methods to `Store`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from duckdb import DuckDBPyConnection

from whatsray.store import reads
from whatsray.store.records import StatusCounts, chat_string
from whatsray.whatsapp.events import ChatKey

__all__ = ["CountsMixin"]

T = TypeVar("T")


class CountsMixin:
    """The counting reads of `Store` (its `_read`)."""

    async def _read(self, fn: Callable[[DuckDBPyConnection], T]) -> T:
        raise NotImplementedError

    async def count(self, table: str, **filters: Any) -> int:
        """Rows of a table matching equality filters, e.g. `count("outbound", status="read")`."""
        return await self._read(lambda cur: reads.count(cur, table, **filters))

    async def count_messages(self, chat: ChatKey | str | None = None, **filters: Any) -> int:
        if chat is not None:
            filters["chat"] = chat_string(chat)
        return await self.count("messages", **filters)

    async def count_turns(self, chat: ChatKey | str | None = None, **filters: Any) -> int:
        if chat is not None:
            filters["chat"] = chat_string(chat)
        return await self.count("turns", **filters)

    async def count_outbound(self, status: str | None = None) -> int:
        return await (self.count("outbound", status=status) if status else self.count("outbound"))

    async def count_dead_letters(self) -> int:
        return await self.count("dead_letters")

    async def count_chats(self) -> int:
        return await self.count("chats")

    async def count_contacts(self) -> int:
        return await self.count("contacts")

    async def status_counts(self) -> StatusCounts:
        """Dead letters not replayed and chats in handoff, in one read (`GET /api/status`, and
        the `whatsray_handoffs_active` gauge)."""
        return await self._read(reads.status_counts)
