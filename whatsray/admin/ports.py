"""What the admin API needs of the store, the outboxes and the inbox: the methods it calls,
nothing more.

`whatsray.store.Store`, `whatsray.outbox.Outbox` and `whatsray.inbox.Inbox` satisfy these
directly; on Ray the ingress passes typed clients of the Store and Outbox actors
(`actors.clients.AdminStoreClient`, `AdminOutboxClient`), each checked against its protocol by
mypy, and its own `Inbox` (a Redis client, no actor in between).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from whatsray.admin.status_models import StatusOut
from whatsray.inbox.values import AppendResult, UnresolvedEntry
from whatsray.outbox.ledger import DeadLetter, OutboundItem, OutboundRecord
from whatsray.store.quarantine import QuarantineRecord, UnresolvedMessage
from whatsray.store.records import ChatRecord, Contact, MessageRecord
from whatsray.whatsapp.events import ChatKey, Event

__all__ = [
    "AdminInboxPort",
    "AdminOutboxPort",
    "AdminStorePort",
    "HandoffControl",
    "InferenceReport",
    "StatusReport",
]


class AdminStorePort(Protocol):
    async def get_chat(self, chat: ChatKey | str) -> ChatRecord | None: ...

    async def list_chats(
        self, limit: int = 50, offset: int = 0, *, phone_number_id: str | None = None
    ) -> list[ChatRecord]: ...

    async def get_messages(
        self, chat: ChatKey | str, limit: int = 50, before: int | None = None
    ) -> list[MessageRecord]: ...

    async def search_contacts(
        self, q: str, limit: int = 20, *, phone_number_id: str | None = None
    ) -> list[Contact]: ...

    async def get_outbound(self, outbound_id: str) -> OutboundRecord | None: ...

    async def record_outbound(self, item: OutboundItem) -> bool: ...

    async def get_dead_letter(self, dead_letter_id: str) -> DeadLetter | None: ...

    async def list_dead_letters(
        self,
        limit: int = 50,
        include_replayed: bool = False,
        offset: int = 0,
        *,
        phone_number_id: str | None = None,
    ) -> list[DeadLetter]: ...

    async def handoff_chats(
        self,
        phone_number_id: str | None = None,
        *,
        idle_before: float | None = None,
        limit: int = 1000,
    ) -> list[ChatRecord]: ...

    async def get_quarantined(self, quarantine_id: str) -> QuarantineRecord | None: ...

    async def list_quarantined(
        self, limit: int = 50, include_replayed: bool = False, offset: int = 0
    ) -> list[QuarantineRecord]: ...

    async def claim_quarantine_replay(self, quarantine_id: str) -> bool: ...

    async def undo_quarantine_replay(self, quarantine_id: str) -> None: ...

    async def unresolved_messages(
        self, older_than_s: float, limit: int = 100
    ) -> list[UnresolvedMessage]: ...

    # Analytics (whatsray.store.analytics, docs/analytics.md).
    async def analytics_summary(
        self, start: float, end: float, phone_number_id: str | None = None
    ) -> dict[str, Any]: ...

    async def analytics_daily(
        self, start: float, end: float, phone_number_id: str | None = None
    ) -> dict[str, Any]: ...

    async def export_table(
        self,
        table: str,
        start: float | None = None,
        end: float | None = None,
        phone_number_id: str | None = None,
    ) -> bytes: ...


class AdminInboxPort(Protocol):
    """The inbox, for the inbound account (`GET /api/inbound/unresolved`) and quarantine
    replays: `whatsray.inbox.Inbox` (the ingress holds one)."""

    @property
    def partitions(self) -> int: ...

    async def unresolved(
        self, partition: int, older_than_s: float, limit: int = 100, now_ms: int | None = None
    ) -> list[UnresolvedEntry]: ...

    async def append_replay(self, events: Sequence[Event]) -> AppendResult: ...


class AdminOutboxPort(Protocol):
    """One business number's outbox."""

    async def dispatch(
        self, items: Sequence[OutboundItem], fresh: Sequence[bool] | None = None
    ) -> None:
        """Send items already recorded; `fresh[i]`: item i was recorded just now and never
        handed over, so the outbox sends it without the grace wait for a status."""

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
