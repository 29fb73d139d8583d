"""The values a session passes around: inbound entries, turn requests and results, tool calls.

A turn is one call of the injected `run_turn(request, journal)`. Everything here is an immutable
value (frozen, slotted dataclasses holding frozen pydantic events), cheap to pickle across Ray,
except `ToolCallJournal`: the one mutable object, owned by the session, that the agent appends to
while it works so that a cancelled turn can still report the tool calls it started.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

from whatsray.session.state import HistoryMessage
from whatsray.whatsapp.events import ChatKey, ErrorEvent, MessageEvent, OtherEvent, StatusEvent
from whatsray.whatsapp.message_content import MessageType

__all__ = [
    "CANCELLED",
    "NO_TURN_TYPES",
    "AnyEvent",
    "Inbound",
    "InboundEntry",
    "NonMessageEvent",
    "RecordReason",
    "ReplyPart",
    "ToolCall",
    "ToolCallJournal",
    "ToolCallStatus",
    "TurnOutcome",
    "TurnRequest",
    "TurnResult",
    "TurnUsage",
    "needs_no_turn",
    "turn_id_for",
]

AnyEvent = MessageEvent | StatusEvent | ErrorEvent | OtherEvent
NonMessageEvent = StatusEvent | ErrorEvent | OtherEvent

# A reply part: plain text, or a whole Graph API send body (what `OutboundItem.body` holds).
ReplyPart = str | dict[str, Any]

# Why messages were recorded without a turn (see `SessionHooks.record_messages`): a person is in
# charge, the reject policy answered, or the message asks for no answer (a reaction, a system
# update: `needs_no_turn`).
RecordReason = Literal["handoff", "rejected", "no_turn"]

# Messages that tell the bot something but ask it nothing: stored, never a turn (docs/errors.md).
NO_TURN_TYPES = frozenset({MessageType.REACTION, MessageType.SYSTEM})


def needs_no_turn(event: MessageEvent) -> bool:
    return event.type in NO_TURN_TYPES


CANCELLED = "cancelled"  # the result of a tool call whose turn was cancelled


class Inbound(Protocol):
    """What the host delivers: anything with these three attributes (so the inbox's own type fits).

    `ack_token` is opaque to the session (the Redis stream entry id); it is handed back to the
    injected `ack` once the item is committed.
    """

    @property
    def chat(self) -> ChatKey: ...

    @property
    def event(self) -> AnyEvent: ...

    @property
    def ack_token(self) -> str: ...


@dataclass(frozen=True, slots=True)
class InboundEntry:
    """A plain `Inbound`: for tests, and for any producer without its own entry type."""

    chat: ChatKey
    event: AnyEvent
    ack_token: str


class ToolCallStatus(StrEnum):
    RUNNING = "running"
    OK = "ok"
    ERROR = "error"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call of a turn: `result` is None only while it runs, `cancelled` if cancelled."""

    call_id: str
    name: str
    arguments: str = "{}"  # JSON text, as the model produced it
    result: str | None = None
    status: ToolCallStatus = ToolCallStatus.RUNNING

    @property
    def finished(self) -> bool:
        return self.status is not ToolCallStatus.RUNNING


class ToolCallJournal:
    """The tool calls a running turn has started, in order, as the agent reports them.

    The agent calls `started` before it runs a tool and `finished` after. When the session cancels
    the turn (interrupt, timeout, failure) it calls `cancel_unfinished`, so every started call ends
    with a result. Across processes, the Ray edge streams these two calls back to the host's copy.
    """

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: dict[str, ToolCall] = {}

    def started(self, call_id: str, name: str, arguments: str = "{}") -> None:
        self._calls[call_id] = ToolCall(call_id=call_id, name=name, arguments=arguments)

    def finished(self, call_id: str, result: str, *, error: bool = False) -> None:
        call = self._calls.get(call_id)
        if call is None:  # finished without started: still worth keeping
            call = ToolCall(call_id=call_id, name="unknown")
        status = ToolCallStatus.ERROR if error else ToolCallStatus.OK
        self._calls[call_id] = ToolCall(call.call_id, call.name, call.arguments, result, status)

    @property
    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(self._calls.values())

    def cancel_unfinished(self) -> tuple[ToolCall, ...]:
        """Give every running call the result `cancelled`; return all calls, in start order."""
        for call_id, call in self._calls.items():
            if not call.finished:
                self._calls[call_id] = ToolCall(
                    call.call_id, call.name, call.arguments, CANCELLED, ToolCallStatus.CANCELLED
                )
        return self.calls

    def __len__(self) -> int:
        return len(self._calls)


class TurnOutcome(StrEnum):
    OK = "ok"
    FAILED = "failed"  # run_turn raised or timed out; the result carries the apology
    HANDOFF = "handoff"  # the agent handed the chat to a human: no turns until the flag is cleared


@dataclass(frozen=True, slots=True)
class TurnUsage:
    engine: str | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0


def turn_id_for(chat: ChatKey | str, event_ids: Iterable[str]) -> str:
    """A stable turn id: the same inputs give the same id, in this process or after a crash.

    Downstream exactly-once hangs on it: outbound ids are derived from it, so a turn retried with
    the same inputs records (and sends) nothing new.
    """
    digest = hashlib.blake2b(digest_size=16)
    for part in (str(chat), *event_ids):
        encoded = part.encode()
        digest.update(len(encoded).to_bytes(4, "big"))  # length-prefixed: no ambiguous joins
        digest.update(encoded)
    return "turn-" + digest.hexdigest()


@dataclass(frozen=True, slots=True)
class TurnRequest:
    """Everything an agent needs for one turn, and nothing live.

    `inputs` are the user's messages of this turn (several when coalesced or interrupted), in
    arrival order; `history` is the window of earlier messages (never the inputs, never the whole
    conversation) and `summary` what the store summarised of the older ones.
    `interrupted_tool_calls` are the calls of earlier attempts of this turn that an `interrupt`
    cancelled, each with its result (`cancelled` where it had not finished).
    """

    turn_id: str
    chat: ChatKey
    inputs: tuple[MessageEvent, ...]
    history: tuple[HistoryMessage, ...]
    agent: str | None
    handoff: bool
    last_inbound_at: float | None
    attempt: int = 1
    interrupted_tool_calls: tuple[ToolCall, ...] = ()
    summary: str | None = None  # of the conversation before the history window, if any

    @property
    def input_ids(self) -> tuple[str, ...]:
        return tuple(event.idempotency_key for event in self.inputs)


@dataclass(frozen=True, slots=True)
class TurnResult:
    """What a turn produced. Lists given for the sequences are stored as tuples."""

    reply_parts: tuple[ReplyPart, ...] = ()
    agent: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    outcome: TurnOutcome = TurnOutcome.OK
    usage: TurnUsage = field(default_factory=TurnUsage)
    error: str | None = None  # what went wrong, for a FAILED turn
    agent_outcome: str | None = None  # the agent's own (AgentOutcome): "no_knowledge"...

    def __post_init__(self) -> None:
        # Frozen: callers may pass lists and plain strings, but the value keeps tuples and enums.
        object.__setattr__(self, "outcome", TurnOutcome(self.outcome))
        object.__setattr__(self, "reply_parts", _as_tuple(self.reply_parts))
        object.__setattr__(self, "tool_calls", _as_tuple(self.tool_calls))


def _as_tuple(items: Sequence[Any]) -> tuple[Any, ...]:
    return items if isinstance(items, tuple) else tuple(items)
