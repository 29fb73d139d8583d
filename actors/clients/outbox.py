# Ray handles are untyped: a remote result is Any, and the return annotation is the contract.
# mypy: disable-error-code="no-any-return"
"""Clients of an Outbox actor (one per business number), one per consumer: the session host's
pipeline, the admin API, the agents' tools and the scheduler's dead-letter sweep."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from actors.clients._base import Client
from whatsray.admin.ports import AdminOutboxPort
from whatsray.calls import calls
from whatsray.outbox.ledger import OutboundItem, OutboundRecord
from whatsray.outbox.snapshot import OutboxStatus
from whatsray.pipeline.ports import OutboxPort
from whatsray.scheduling.ports import DeadLetterReplayer
from whatsray.tools.services import ToolOutbox
from whatsray.whatsapp.events import StatusEvent

OUTBOX = "outbox"


class PipelineOutboxClient(Client):
    """The session host's outbox (`OutboxPort`): replies, statuses, read receipts, in batches."""

    async def dispatch(
        self,
        items: Sequence[OutboundItem],
        fresh: Sequence[bool] | None = None,
        windows: Mapping[str, float | None] | None = None,
    ) -> None:
        calls.count(OUTBOX, "dispatch")
        return await self._handle.dispatch.remote(items, fresh, windows)

    async def apply_statuses(self, events: Sequence[StatusEvent]) -> list[str | None]:
        calls.count(OUTBOX, "apply_statuses")
        return await self._handle.apply_statuses.remote(events)

    async def mark_reads(self, message_ids: Sequence[str], typing_indicator: bool = True) -> None:
        calls.count(OUTBOX, "mark_reads")
        return await self._handle.mark_reads.remote(message_ids, typing_indicator)

    async def sweep_pending(self, older_than_s: float = 30.0) -> int:
        calls.count(OUTBOX, "sweep_pending")
        return await self._handle.sweep_pending.remote(older_than_s)


class AdminOutboxClient(Client):
    """The admin API's outbox (`AdminOutboxPort`): sends and dead-letter replays; and its
    queue and rate limits for `GET /api/status`."""

    async def dispatch(
        self, items: Sequence[OutboundItem], fresh: Sequence[bool] | None = None
    ) -> None:
        calls.count(OUTBOX, "dispatch")
        return await self._handle.dispatch.remote(items, fresh)

    async def replay_dead_letter(self, dead_letter_id: str) -> OutboundRecord:
        calls.count(OUTBOX, "replay_dead_letter")
        return await self._handle.replay_dead_letter.remote(dead_letter_id)

    async def status(self) -> OutboxStatus:
        calls.count(OUTBOX, "status")
        return await self._handle.status.remote()


class ToolOutboxClient(Client):
    """The agents' tools' outbox (`ToolOutbox`): what a tool recorded, sent."""

    async def dispatch(
        self, items: Sequence[OutboundItem], fresh: Sequence[bool] | None = None
    ) -> None:
        calls.count(OUTBOX, "dispatch")
        return await self._handle.dispatch.remote(items, fresh)


class ReplayerClient(Client):
    """The scheduler's dead-letter sweep (`DeadLetterReplayer`)."""

    async def replay_dead_letter(self, dead_letter_id: str) -> OutboundRecord:
        calls.count(OUTBOX, "replay_dead_letter")
        return await self._handle.replay_dead_letter.remote(dead_letter_id)


def _check(handle: Any) -> None:
    """Never called: mypy holds each client to the protocol its consumer takes."""
    pipeline: OutboxPort = PipelineOutboxClient(handle)
    admin: AdminOutboxPort = AdminOutboxClient(handle)
    tools: ToolOutbox = ToolOutboxClient(handle)
    replayer: DeadLetterReplayer = ReplayerClient(handle)
    del pipeline, admin, tools, replayer
