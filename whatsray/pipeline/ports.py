"""What the pipeline needs of its collaborators: the methods it calls, nothing more.

The real classes (`Store`, `Outbox`, `Router`, `Agent`) satisfy these directly; the Ray edge
satisfies them with thin proxies that forward each call to an actor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from whatsray.agents.agent import AgentTurnRequest, AgentTurnResult
from whatsray.agents.backpressure import AgentLoad
from whatsray.agents.router import RouteDecision, RouteRequest
from whatsray.outbox.ledger import OutboundItem
from whatsray.session.turns import ToolCallJournal
from whatsray.store.records import MessageRecord, SessionSnapshot, ToolCallRecord, TurnRecord
from whatsray.whatsapp.events import ChatKey, MessageEvent, StatusEvent


class StorePort(Protocol):
    async def record_inbound(self, event: MessageEvent) -> bool: ...

    async def record_outbound(self, item: OutboundItem) -> bool: ...

    async def record_turn_results(
        self,
        turn: TurnRecord,
        outbound: Sequence[OutboundItem] = (),
        session: SessionSnapshot | None = None,
        tool_calls: Sequence[ToolCallRecord] = (),
    ) -> list[bool]: ...

    async def update_chat(self, chat: ChatKey | str, *, last_inbound_at: float | None) -> None:
        """Set the chat's last inbound time (creating the chat if new)."""
        ...

    async def load_session(self, chat: ChatKey | str) -> SessionSnapshot | None: ...

    async def recent_messages(
        self, chat: ChatKey | str, limit: int = 50
    ) -> list[MessageRecord]: ...


class OutboxPort(Protocol):
    """One business number's outbox."""

    async def dispatch(self, items: Sequence[OutboundItem]) -> None: ...

    async def apply_status(self, event: StatusEvent) -> str | None: ...

    async def mark_read(self, message_id: str, typing_indicator: bool) -> None: ...


class RouterPort(Protocol):
    async def route(self, request: RouteRequest) -> RouteDecision: ...


class AgentsPort(Protocol):
    """Runs a turn on the named agent (a pool of them, on a cluster). The agent reports its tool
    calls to `journal` as they start and finish (across processes, the Ray edge streams them)."""

    async def run(
        self, agent: str, request: AgentTurnRequest, journal: ToolCallJournal
    ) -> AgentTurnResult: ...

    async def load(self, agent: str) -> AgentLoad:
        """How loaded the agent's inference is (its queues and its engine)."""
        ...
