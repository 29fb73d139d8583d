"""What the admin API needs of the store and the outboxes: the methods it calls, nothing more.

`whatsray.store.Store` and `whatsray.outbox.Outbox` satisfy these directly; on Ray the ingress
passes typed clients of the Store and Outbox actors (`actors.clients.AdminStoreClient`,
`AdminOutboxClient`), each checked against its protocol by mypy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from whatsray.admin.status_models import StatusOut
from whatsray.outbox.ledger import DeadLetter, OutboundItem, OutboundRecord
from whatsray.store.records import ChatRecord, Contact, MessageRecord
from whatsray.whatsapp.events import ChatKey

__all__ = ["AdminOutboxPort", "AdminStorePort", "HandoffControl", "InferenceReport", "StatusReport"]


class AdminStorePort(Protocol):
    async def get_chat(self, chat: ChatKey | str) -> ChatRecord | None: ...

    async def list_chats(self, limit: int = 50, offset: int = 0) -> list[ChatRecord]: ...

    async def get_messages(
        self, chat: ChatKey | str, limit: int = 50, before: int | None = None
    ) -> list[MessageRecord]: ...

    async def search_contacts(self, q: str, limit: int = 20) -> list[Contact]: ...

    async def get_outbound(self, outbound_id: str) -> OutboundRecord | None: ...

    async def record_outbound(self, item: OutboundItem) -> bool: ...

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None: ...

    async def list_dead_letters(
        self, limit: int = 50, include_replayed: bool = False, offset: int = 0
    ) -> list[DeadLetter]: ...

    async def handoff_chats(
        self,
        phone_number_id: str | None = None,
        *,
        idle_before: float | None = None,
        limit: int = 1000,
    ) -> list[ChatRecord]: ...


class AdminOutboxPort(Protocol):
    """One business number's outbox."""

    async def dispatch(self, items: Sequence[OutboundItem]) -> None: ...

    async def replay_dead_letter(self, dead_letter_id: str) -> OutboundRecord: ...


# The inference load report: `{"agents": [AgentLoad.as_dict(), ...], "notices_sent": n,
# "typing_refreshes": n}`, gathered from the agent workers and session hosts by the edge.
InferenceReport = Callable[[], Awaitable[dict[str, Any]]]


# One snapshot of the running platform (`GET /api/status`): `whatsray.admin.status.collect_status`
# over the parts the app has (on Ray, the ingress's actor clients).
StatusReport = Callable[[], Awaitable[StatusOut]]


# Sets (True) or clears (False) a chat's handoff flag, given its canonical key, so that its live
# session sees it: in one process `SessionHostCore.set_handoff` of the host owning the chat, on
# Ray that host actor's `set_handoff` (the ingress routes by `partition_for`).
HandoffControl = Callable[[str, bool], Awaitable[None]]
