"""Commit a turn: store it with its inputs, replies and tool calls in one transaction, then hand
the replies to the outbox.

Many chats' turns share that work (docs/hot-path.md): the host's committer gathers the turns that
end while the last commit is in flight and sends them as one `commit_turns` call (one DuckDB
transaction), then one `dispatch` per business number. Each session still awaits its own turn's
result: a turn that failed alone raises for that session only, which retries it.

Exactly-once hangs on ids chosen here, before anything is sent: reply part `i` of turn `t` is
outbound `t:i`, and the turn id is derived from its input ids. A turn retried after a crash
records nothing new (the store's inserts are keyed on those ids) and the outbox never sends an
outbound id twice. (Messages a tool sent during the turn have ids `t:tool:n`: `whatsray.tools`.)

The stored tool calls are the interrupted attempts' (each ended, `cancelled` where it was stopped)
followed by the final attempt's: every call has a result, so the history stays valid.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from whatsray.batching import Batcher
from whatsray.observability.logs import log_ids
from whatsray.outbox.ledger import OutboundItem
from whatsray.pipeline.ports import OutboxPort, StorePort
from whatsray.session.scheduled import is_scheduled, opens_window
from whatsray.session.turns import (
    CANCELLED,
    ReplyPart,
    ToolCall,
    ToolCallStatus,
    TurnOutcome,
    TurnRequest,
    TurnResult,
)
from whatsray.store.records import SessionSnapshot, ToolCallRecord, TurnCommit, TurnRecord
from whatsray.store.rows import inbound_row
from whatsray.tools.outbound import recipient
from whatsray.whatsapp.events import ChatKey, MessageEvent
from whatsray.whatsapp.messages import TextMessage

__all__ = [
    "TurnCommitter",
    "outbound_id",
    "outbound_items",
    "recipient",
    "reply_body",
    "tool_call_records",
]

log = logging.getLogger(__name__)


def outbound_id(turn_id: str, part: int) -> str:
    return f"{turn_id}:{part}"


def reply_body(to: str, part: ReplyPart) -> dict[str, Any]:
    """The Graph API send body of a reply part: text becomes a text message to the chat's user."""
    if isinstance(part, str):
        return TextMessage(to=to, body=part).to_graph_body()
    return {**part, "to": to}


def outbound_items(
    chat: ChatKey,
    turn_id: str,
    parts: Sequence[ReplyPart],
    created_at: float,
    purpose: str | None = None,
    in_reply_to: tuple[str, ...] = (),
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
            purpose=purpose,
            in_reply_to=in_reply_to,
        )
        for index, part in enumerate(parts)
    )


def tool_call_records(turn_id: str, calls: Sequence[ToolCall]) -> tuple[ToolCallRecord, ...]:
    """The calls as the store keeps them, numbered in order; one still running (which a finished
    turn should not have) is stored as cancelled, so every stored call has a result."""
    out = []
    for index, call in enumerate(calls):
        done = call.finished and call.result is not None
        out.append(
            ToolCallRecord(
                turn_id=turn_id,
                idx=index,
                call_id=call.call_id,
                name=call.name,
                arguments=call.arguments,
                result=call.result if done and call.result is not None else CANCELLED,
                status=call.status.value if done else ToolCallStatus.CANCELLED.value,
            )
        )
    return tuple(out)


def _log_committed(turn: TurnRecord) -> None:
    """One line per turn, where it became durable: its inputs, id and chat (docs/logging.md)."""
    if not log.isEnabledFor(logging.INFO):
        return  # the hot path: not even the chat's hash
    ids = log_ids(wamid=turn.input_ids, turn_id=turn.turn_id, chat=turn.chat)
    parts = len(turn.reply_ids)
    log.info("turn committed: agent %s, %s, %d part(s)", turn.agent, turn.outcome, parts, extra=ids)


def _event_time(event: MessageEvent, default: float) -> float:
    return event.timestamp.timestamp() if event.timestamp is not None else default


@dataclass(slots=True)
class _Dispatch:
    """The replies of one flush for one business number."""

    items: list[OutboundItem] = field(default_factory=list)
    fresh: list[bool] = field(default_factory=list)
    windows: dict[str, float | None] = field(default_factory=dict)
    turns: list[int] = field(default_factory=list)  # indexes in the flush


class TurnCommitter:
    """The session's `commit_turn` (and `record_messages`) hook."""

    def __init__(
        self,
        store: StorePort,
        outbox_for: Callable[[str], OutboxPort],
        *,
        now: Callable[[], float],
        linger_s: float = 0.005,
    ) -> None:
        self._store = store
        self._outbox_for = outbox_for
        self._now = now
        self.batcher: Batcher[tuple[TurnCommit, float | None], None] = Batcher(
            self._flush, name="turn-commits", linger_s=linger_s
        )

    async def commit(self, request: TurnRequest, result: TurnResult) -> None:
        now = self._now()
        # A turn that only answers scheduled runs is a reminder: outside the user's window the
        # outbox sends the reminder template instead.
        reminder = all(is_scheduled(e) for e in request.inputs)
        purpose = "reminder" if reminder else None
        items = outbound_items(
            request.chat, request.turn_id, result.reply_parts, now, purpose, request.input_ids
        )
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
            agent_outcome=result.agent_outcome,
        )
        # The user's own messages only: a scheduled input does not open the window.
        opened = max((_event_time(e, now) for e in request.inputs if opens_window(e)), default=None)
        snapshot = SessionSnapshot(
            chat=str(request.chat),
            agent=result.agent or request.agent,
            handoff=request.handoff or result.outcome is TurnOutcome.HANDOFF,
            last_inbound_at=opened,
            summary=request.summary,
            updated_at=now,
        )
        calls = tool_call_records(
            request.turn_id, (*request.interrupted_tool_calls, *result.tool_calls)
        )
        inputs = tuple(inbound_row(event, now) for event in request.inputs)
        commit = TurnCommit(turn, inputs, items, snapshot, calls)
        window = max((t for t in (opened, request.last_inbound_at) if t is not None), default=None)
        await self.batcher.submit((commit, window))

    async def _flush(self, batch: list[tuple[TurnCommit, float | None]]) -> list[Exception | None]:
        """One store call for the batch, then one dispatch per number. A turn whose replies
        could not be handed over fails (it is durable; its retry dispatches again)."""
        results = await self._store.commit_turns([commit for commit, _ in batch])
        outcome: list[Exception | None] = []
        dispatches: dict[str, _Dispatch] = {}
        for index, ((commit, window), result) in enumerate(zip(batch, results, strict=True)):
            if isinstance(result, Exception):
                outcome.append(result)
                continue
            outcome.append(None)
            _log_committed(commit.turn)
            if not commit.outbound:
                continue
            group = dispatches.setdefault(commit.outbound[0].phone_number_id, _Dispatch())
            group.items.extend(commit.outbound)
            group.fresh.extend(result)
            group.windows[commit.turn.chat] = window
            group.turns.append(index)
        handed = await asyncio.gather(
            *(self._dispatch(number, group) for number, group in dispatches.items()),
            return_exceptions=True,
        )
        for group, error in zip(dispatches.values(), handed, strict=True):
            if isinstance(error, Exception):
                for index in group.turns:
                    outcome[index] = error
            elif isinstance(error, BaseException):
                raise error
        return outcome

    async def _dispatch(self, number: str, group: _Dispatch) -> None:
        await self._outbox_for(number).dispatch(group.items, group.fresh, group.windows)

    async def record_inputs(self, events: Sequence[MessageEvent], outcome: str) -> None:
        for event in events:  # insert-if-absent on the wamid: a retry adds nothing
            await self._store.record_inbound(event, outcome)
