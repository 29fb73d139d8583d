"""What the pipeline needs of its collaborators: the methods it calls, nothing more.

The real classes (`Store`, `Outbox`, `Router`, `Agent`) satisfy these directly; the Ray edge
satisfies them with typed clients that forward each call to an actor (`actors/clients/`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from whatsray.agents.agent import AgentTurnRequest, AgentTurnResult
from whatsray.agents.backpressure import AgentLoad
from whatsray.agents.router import RouteDecision, RouteRequest
from whatsray.outbox.ledger import OutboundItem
from whatsray.session.turns import ToolCallJournal
from whatsray.store.quarantine import QuarantineRecord
from whatsray.store.records import MessageRecord, SessionSnapshot, TurnCommit
from whatsray.whatsapp.events import ChatKey, MessageEvent, StatusEvent


class StorePort(Protocol):
    async def record_inbound(
        self, event: MessageEvent, outcome: str = "recorded", outcome_ref: str | None = None
    ) -> bool:
        """Store a message no turn consumes, with its outcome (docs/errors.md, "The account")."""
        ...

    async def quarantine(
        self, record: QuarantineRecord, messages: Sequence[MessageEvent] = ()
    ) -> bool:
        """Store what the pipeline gave up on, its messages with the record's outcome."""
        ...

    async def record_outbound(self, item: OutboundItem) -> bool: ...

    async def commit_turns(self, commits: Sequence[TurnCommit]) -> list[list[bool] | Exception]:
        """Many chats' turns in one call (and one transaction); per turn, its replies' "newly
        recorded" flags, or the exception that failed that turn alone."""
        ...

    async def update_chat(self, chat: ChatKey | str, *, last_inbound_at: float | None) -> None:
        """Set the chat's last inbound time (creating the chat if new)."""
        ...

    async def load_session(self, chat: ChatKey | str) -> SessionSnapshot | None: ...

    async def recent_messages(
        self, chat: ChatKey | str, limit: int = 50
    ) -> list[MessageRecord]: ...


class OutboxPort(Protocol):
    """One business number's outbox. Every method takes many items: callers batch."""

    async def dispatch(
        self,
        items: Sequence[OutboundItem],
        fresh: Sequence[bool] | None = None,
        windows: Mapping[str, float | None] | None = None,
    ) -> None: ...

    async def apply_statuses(self, events: Sequence[StatusEvent]) -> list[str | None]: ...

    async def mark_reads(self, message_ids: Sequence[str], typing_indicator: bool = True) -> None:
        """Read receipts (and the typing indicator), best effort, in the background."""
        ...

    async def sweep_pending(self, older_than_s: float = 30.0) -> int:
        """Send what is recorded and pending but nobody is sending (e.g. the replies a crashed
        host committed but never dispatched)."""
        ...


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
