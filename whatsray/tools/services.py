"""`ToolServices` over the platform's own parts: the store and the outboxes.

The same class serves both worlds: in one process it wraps the `Store` and `Outbox` objects; in
an agent worker actor it wraps typed clients of the Store and Outbox actors
(`actors.clients.ToolStoreClient`, a `ToolStore` and `OptInStore`, and `ToolOutboxClient`, a
`ToolOutbox`). `UnavailableToolServices` is for agents run without a platform (tests, demos):
every tool that needs the platform answers the model with a clear error instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from whatsray.outbox.ledger import OutboundItem
from whatsray.scheduling.ports import JobsPort
from whatsray.store.records import Contact, MessageRecord
from whatsray.tools.base import ToolError
from whatsray.whatsapp.events import ChatKey

__all__ = [
    "OptInStore",
    "PlatformToolServices",
    "ToolOutbox",
    "ToolStore",
    "UnavailableToolServices",
]

log = logging.getLogger(__name__)


class ToolStore(Protocol):
    """The store methods tools use (`whatsray.store.Store` has them)."""

    async def get_messages(
        self, chat: ChatKey | str, limit: int = 50, before: int | None = None
    ) -> list[MessageRecord]: ...

    async def search_contacts(self, q: str, limit: int = 20) -> list[Contact]: ...

    async def record_outbound(self, item: OutboundItem) -> bool: ...


class OptInStore(Protocol):
    """The store's opt-in method (migration 5; `whatsray.store.Store` has it)."""

    async def set_opt_in(self, chat: ChatKey | str, opted_in: bool) -> bool: ...


class ToolOutbox(Protocol):
    async def dispatch(
        self, items: Sequence[OutboundItem], fresh: Sequence[bool] | None = None
    ) -> None: ...


class PlatformToolServices:
    def __init__(
        self,
        store: ToolStore,
        outbox_for: Callable[[str], ToolOutbox],
        *,
        operator_number: str | None = None,
        jobs: JobsPort | None = None,
        default_timezone: str = "UTC",
        opt_in: OptInStore | None = None,
    ) -> None:
        """`jobs`: the scheduler (the reminder tools; None: not available). `opt_in`: where
        contacts' opt-in is kept (usually the same store; None: not available)."""
        self._store = store
        self._outbox_for = outbox_for
        self._operator_number = operator_number
        self._jobs = jobs
        self._default_timezone = default_timezone
        self._opt_in = opt_in

    @property
    def operator_number(self) -> str | None:
        return self._operator_number

    @property
    def jobs(self) -> JobsPort | None:
        return self._jobs

    @property
    def default_timezone(self) -> str:
        return self._default_timezone

    async def set_opt_in(self, chat: ChatKey, opted_in: bool) -> bool:
        if self._opt_in is None:
            raise ToolError("subscriptions are not available here")
        return await self._opt_in.set_opt_in(chat, opted_in)

    async def get_messages(
        self, chat: ChatKey, limit: int, before: int | None = None
    ) -> Sequence[MessageRecord]:
        return await self._store.get_messages(chat, limit, before)

    async def search_contacts(self, q: str, limit: int) -> Sequence[Contact]:
        return await self._store.search_contacts(q, limit)

    async def send(self, item: OutboundItem) -> bool:
        """Record, then dispatch. Shielded: a turn cancelled in between (an interrupt) must not
        leave a recorded message that nobody sends until the next outbox restart."""
        try:
            outbox = self._outbox_for(item.phone_number_id)
        except KeyError:
            raise ToolError(f"no outbox for business number {item.phone_number_id}") from None
        return await asyncio.shield(self._record_and_dispatch(outbox, item))

    async def _record_and_dispatch(self, outbox: ToolOutbox, item: OutboundItem) -> bool:
        new = await self._store.record_outbound(item)
        # Dispatch even when it was recorded before: the outbox skips what it already sent and
        # sends what an earlier attempt recorded but did not get to send. Only a record made
        # just now is known never attempted (fresh: sent at once, no grace wait for a status).
        await outbox.dispatch([item], fresh=[new])
        return new


class UnavailableToolServices:
    """No platform behind the agent: tools that need one return an error to the model."""

    operator_number: str | None = None
    jobs: JobsPort | None = None
    default_timezone: str = "UTC"

    async def get_messages(
        self, chat: ChatKey, limit: int, before: int | None = None
    ) -> Sequence[MessageRecord]:
        raise ToolError("message history is not available here")

    async def search_contacts(self, q: str, limit: int) -> Sequence[Contact]:
        raise ToolError("contacts are not available here")

    async def send(self, item: OutboundItem) -> bool:
        raise ToolError("sending messages is not available here")

    async def set_opt_in(self, chat: ChatKey, opted_in: bool) -> bool:
        raise ToolError("subscriptions are not available here")
