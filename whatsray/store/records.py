"""Values the store takes and returns: frozen, picklable, no live handles inside.

Times are unix seconds (float) everywhere, as in the database. Chats are canonical `ChatKey`
strings (`"{phone_number_id}:{user}"`); a `ChatKey` is accepted wherever a chat is given.
The outbound ledger's values (`OutboundItem`, `OutboundRecord`, `DeadLetter`) belong to
`whatsray.outbox.ledger` and are re-exported here for convenience.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from whatsray.outbox.ledger import DeadLetter, OutboundItem, OutboundRecord
from whatsray.whatsapp.events import ChatKey

if TYPE_CHECKING:
    from whatsray.store.rows import InboundRow

__all__ = [
    "ChatRecord",
    "Contact",
    "DeadLetter",
    "Direction",
    "MessageRecord",
    "OutboundItem",
    "OutboundRecord",
    "SessionSnapshot",
    "StatusChange",
    "StatusCounts",
    "ToolCallRecord",
    "TurnCommit",
    "TurnRecord",
    "chat_string",
]

Direction = Literal["in", "out"]


def chat_string(chat: ChatKey | str) -> str:
    """The canonical string of a chat; raises `ValueError` for a string that is not a chat key."""
    if isinstance(chat, ChatKey):
        return str(chat)
    return str(ChatKey.parse(chat))


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class _ChatRecord(_Record):
    chat: str

    @field_validator("chat", mode="before")
    @classmethod
    def _canonical_chat(cls, value: Any) -> Any:
        return str(value) if isinstance(value, ChatKey) else value


class Contact(_ChatRecord):
    """A user as seen on one business number (keyed by chat)."""

    phone_number_id: str
    phone: str | None = None
    bsuid: str | None = None
    profile_name: str | None = None
    first_seen: float
    last_seen: float


class ChatRecord(_ChatRecord):
    """A conversation: who is in charge of it and when the user last wrote (24-hour window)."""

    phone_number_id: str
    user: str
    agent: str | None = None
    handoff: bool = False
    last_inbound_at: float | None = None
    created_at: float
    updated_at: float


class StatusChange(_Record):
    """One status update as it arrived (not merged): the history keeps every arrival."""

    status: str
    at: float
    error_code: int | None = None


class MessageRecord(_ChatRecord):
    """A message in a chat, either way.

    `id` is the wamid for inbound messages and the outbound id for outbound ones. `seq` is the
    store's arrival order (Meta's timestamps have one-second resolution, so they cannot order a
    burst); it is also the cursor of `get_messages(before=...)`. `raw` is Meta's message payload
    (inbound) or the Graph API send body (outbound). `turn_id` is the turn that consumed an
    inbound message (None: not processed yet) or that produced an outbound one. `outcome` is
    what became of an inbound message (docs/errors.md, "The account"; None: not settled yet) and
    `outcome_ref` the turn, quarantine record or dead letter it names.
    """

    id: str
    seq: int
    direction: Direction
    type: str
    text: str | None = None
    raw: dict[str, Any] | None = None
    wamid: str | None = None
    status: str | None = None
    status_history: tuple[StatusChange, ...] = ()
    turn_id: str | None = None
    outcome: str | None = None
    outcome_ref: str | None = None
    created_at: float
    updated_at: float


class TurnRecord(_ChatRecord):
    """What one turn did: which agent and engine, which messages in and out, cost and outcome."""

    turn_id: str
    agent: str | None = None
    engine: str | None = None
    input_ids: tuple[str, ...] = ()  # inbound wamids the turn answered
    reply_ids: tuple[str, ...] = ()  # outbound ids it produced
    tokens_in: int = Field(default=0, ge=0)
    tokens_out: int = Field(default=0, ge=0)
    latency_ms: float = Field(default=0.0, ge=0)
    outcome: str = "ok"  # "ok", "error", "cancelled", "rejected"...
    error: str | None = None
    started_at: float
    finished_at: float | None = None
    agent_outcome: str | None = None  # the agent's: "ok", "no_knowledge" (FAQ: I don't know)...


class ToolCallRecord(_Record):
    """One tool call of a turn: `idx` is its place in the turn (from 0), `call_id` the id the
    model gave it, `arguments` the model's JSON text, `result` what the model was told (JSON
    text, or `cancelled`), `status` `ok`, `error` or `cancelled`."""

    turn_id: str
    idx: int = Field(ge=0)
    call_id: str
    name: str
    arguments: str = "{}"
    result: str
    status: str


class SessionSnapshot(_ChatRecord):
    """What a session needs to rebuild itself after passivation or a restart.

    `agent`, `handoff` and `last_inbound_at` live on the chat row (one source of truth, also
    written by `record_inbound` and `update_chat`); `summary` and `state` on the session row.
    """

    agent: str | None = None
    handoff: bool = False
    last_inbound_at: float | None = None
    summary: str | None = None  # summary of history that fell out of the window
    state: dict[str, Any] = Field(default_factory=dict)  # anything else the session keeps
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class TurnCommit:
    """Everything one turn stores, in one transaction: its input messages, the turn, its
    replies (recorded as pending outbound), the session snapshot and the tool calls. The unit of
    `Store.commit_turns`, which takes many chats' at once. The inputs travel as `InboundRow`s
    (`whatsray.store.rows.inbound_row`), made by the caller: plain values, cheaper to send
    across processes than the parsed events, and the work stays off the one Store."""

    turn: TurnRecord
    inputs: tuple[InboundRow, ...] = ()
    outbound: tuple[OutboundItem, ...] = ()
    session: SessionSnapshot | None = None
    tool_calls: tuple[ToolCallRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusCounts:
    """What `GET /api/status` shows from the store (`Store.status_counts`)."""

    dead_letters: int  # not replayed yet
    handoffs: int  # chats handed to a person now
