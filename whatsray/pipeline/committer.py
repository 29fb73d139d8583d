"""Commit a turn: store it with its replies in one transaction, then hand the replies to the outbox.

Exactly-once hangs on ids chosen here, before anything is sent: reply part `i` of turn `t` is
outbound `t:i`, and the turn id is derived from its input ids. A turn retried after a crash
records nothing new (the store's inserts are keyed on those ids) and the outbox never sends an
outbound id twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from whatsray.outbox.ledger import OutboundItem
from whatsray.pipeline.ports import OutboxPort, StorePort
from whatsray.session.turns import ReplyPart, TurnRequest, TurnResult
from whatsray.store.records import SessionSnapshot, TurnRecord
from whatsray.whatsapp.events import ChatKey, MessageEvent
from whatsray.whatsapp.messages import TextMessage


def outbound_id(turn_id: str, part: int) -> str:
    return f"{turn_id}:{part}"


def reply_body(to: str, part: ReplyPart) -> dict[str, Any]:
    """The Graph API send body of a reply part: text becomes a text message to the chat's user."""
    if isinstance(part, str):
        return TextMessage(to=to, body=part).to_graph_body()
    return {**part, "to": to}


def recipient(chat: ChatKey) -> str:
    """Whom to send to: `+` and the number (Meta's advice: a number without its `+` may get the
    business number's country code prepended), or the BSUID as is."""
    return "+" + chat.user if chat.user.isdigit() else chat.user


def outbound_items(
    chat: ChatKey, turn_id: str, parts: Sequence[ReplyPart], created_at: float
) -> tuple[OutboundItem, ...]:
    to = recipient(chat)
    return tuple(
        OutboundItem(
            outbound_id=outbound_id(turn_id, index),
            chat=str(chat),
            phone_number_id=chat.phone_number_id,
            to=to,
            body=reply_body(to, part),
            turn_id=turn_id,
            part=index,
            created_at=created_at,
        )
        for index, part in enumerate(parts)
    )


def _event_time(event: MessageEvent, default: float) -> float:
    return event.timestamp.timestamp() if event.timestamp is not None else default


class TurnCommitter:
    """The session's `commit_turn` (and `record_messages`) hook."""

    def __init__(
        self,
        store: StorePort,
        outbox_for: Callable[[str], OutboxPort],
        *,
        now: Callable[[], float],
    ) -> None:
        self._store = store
        self._outbox_for = outbox_for
        self._now = now

    async def commit(self, request: TurnRequest, result: TurnResult) -> None:
        now = self._now()
        await self.record_inputs(request.inputs)
        items = outbound_items(request.chat, request.turn_id, result.reply_parts, now)
        turn = TurnRecord(
            chat=str(request.chat),
            turn_id=request.turn_id,
            agent=result.agent,
            engine=result.usage.engine,
            input_ids=request.input_ids,
            reply_ids=tuple(item.outbound_id for item in items),
            tokens_in=result.usage.prompt_tokens,
            tokens_out=result.usage.completion_tokens,
            latency_ms=result.usage.latency_s * 1000,
            outcome=result.outcome.value,
            error=result.error,
            started_at=min(_event_time(e, now) for e in request.inputs),
            finished_at=now,
        )
        snapshot = SessionSnapshot(
            chat=str(request.chat),
            agent=result.agent or request.agent,
            handoff=request.handoff or result.outcome.value == "handoff",
            last_inbound_at=max(_event_time(e, now) for e in request.inputs),
            summary=request.summary,
            updated_at=now,
        )
        await self._store.record_turn_results(turn, items, snapshot)
        if items:  # durable now: the outbox sends them, and resends after a crash
            await self._outbox_for(request.chat.phone_number_id).dispatch(items)

    async def record_inputs(self, events: Sequence[MessageEvent]) -> None:
        for event in events:  # insert-if-absent on the wamid: a retry adds nothing
            await self._store.record_inbound(event)
