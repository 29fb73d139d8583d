"""What a tool is, and what it is given when it runs.

A `Tool` is declared once: a name, a description (the model reads both), a pydantic model of its
arguments (its JSON schema is what the model sees), an async function, and the permissions an
agent must be granted to list it. The function gets the validated arguments and a `ToolContext`.

The context is built by the agent from the session's turn and the agent's config, never from the
model's output: the chat, the turn id and the permissions are fixed before the model says anything,
and the context is frozen. A tool that needs to act on another chat asks the context, which checks
the agent's granted permissions (`ToolContext.require`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeAlias

from pydantic import BaseModel, ConfigDict

from whatsray.llm.protocol import ToolSpec
from whatsray.outbox.ledger import OutboundItem
from whatsray.scheduling.ports import JobsPort
from whatsray.store.records import Contact, MessageRecord
from whatsray.whatsapp.events import ChatKey

__all__ = [
    "Tool",
    "ToolArguments",
    "ToolContext",
    "ToolError",
    "ToolFunction",
    "ToolOutput",
    "ToolPermissionError",
    "ToolServices",
    "TurnEffects",
]

# OpenAI's rule for function names; every engine we speak accepts it.
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")

# What a tool function may return: text as is, or anything JSON can hold (a pydantic model, a
# mapping, a list), which the loop serialises to JSON text for the model.
ToolOutput: TypeAlias = str | BaseModel | Mapping[str, Any] | Sequence[Any]
ToolFunction: TypeAlias = Callable[[Any, "ToolContext"], Awaitable[ToolOutput]]


class ToolError(Exception):
    """A tool refusing or failing in a way the model should read: the message becomes the tool
    call's result (`{"error": message}`), the turn goes on."""


class ToolPermissionError(ToolError):
    """The agent was not granted what this call needs (config, not the model, grants it)."""


class ToolArguments(BaseModel):
    """Base of tool argument models: frozen, and unknown arguments are an error the model sees
    (a misspelt argument must not silently become a default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolServices(Protocol):
    """What tools need from the platform, and nothing more.

    In one process it is the `Store` and the outboxes (`PlatformToolServices`); on Ray the same
    class over actor proxies. `send` records an outbound item in the ledger and hands it to the
    number's outbox; an id recorded before (a retried turn) is not sent again.
    """

    @property
    def operator_number(self) -> str | None: ...

    async def get_messages(
        self, chat: ChatKey, limit: int, before: int | None = None
    ) -> Sequence[MessageRecord]: ...

    async def search_contacts(self, q: str, limit: int) -> Sequence[Contact]: ...

    async def send(self, item: OutboundItem) -> bool: ...

    @property
    def jobs(self) -> JobsPort | None:
        """The scheduler, for the reminder tools (None: reminders are not available here)."""
        ...

    @property
    def default_timezone(self) -> str:
        """The zone of reminders that name none (`WHATSRAY_DEFAULT_TIMEZONE`)."""
        ...

    async def set_opt_in(self, chat: ChatKey, opted_in: bool) -> bool:
        """Opt the chat's contact in or out of greetings; True when it changed."""
        ...


@dataclass(slots=True)
class TurnEffects:
    """What the tools of one turn did that the agent must act on after the loop. Mutable, one per
    turn attempt, shared by the contexts of its calls (the only mutable part of a context)."""

    handoff_reason: str | None = None
    sends: int = 0  # outbound messages the tools of this turn produced, for their ids
    reminders: int = 0  # reminders the tools of this turn created, for their job ids

    @property
    def handoff(self) -> bool:
        return self.handoff_reason is not None

    def request_handoff(self, reason: str) -> None:
        if self.handoff_reason is None:
            self.handoff_reason = reason


@dataclass(frozen=True, slots=True)
class ToolContext:
    """One tool call's view of its turn. Built by the agent; the model never touches it."""

    chat: ChatKey  # the chat of the current turn: the only chat a tool acts on by default
    turn_id: str
    agent: str
    permissions: frozenset[str]  # granted in agents.yaml
    services: ToolServices
    effects: TurnEffects = field(default_factory=TurnEffects)
    call_index: int = 0  # this call's position among the turn's tool calls, from 0
    step: int = 0  # the model round that asked for it, from 1
    now: Callable[[], float] = time.time

    def for_call(self, call_index: int, step: int) -> ToolContext:
        return replace(self, call_index=call_index, step=step)

    def has(self, permission: str) -> bool:
        return permission in self.permissions

    def require(self, permission: str, doing: str) -> None:
        """Raise `ToolPermissionError` unless the agent was granted `permission`."""
        if permission not in self.permissions:
            raise ToolPermissionError(
                f"permission denied: {doing} needs the permission {permission!r}, "
                f"which agent {self.agent!r} is not granted"
            )

    def next_send(self) -> tuple[str, int]:
        """The id and number of the next message a tool sends: `{turn_id}:tool:{n}`, n counting
        the messages this turn's tools sent (from 0).

        Counting sends (not all calls) keeps the id stable when a retried turn calls a read-only
        tool more or less often before sending: the n-th message of the turn has the same id, so
        the ledger refuses a second copy (see docs/tools.md, "Exactly once")."""
        n = self.effects.sends
        self.effects.sends += 1
        return f"{self.turn_id}:tool:{n}", n


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool, declared once. `permissions`: what an agent must be granted to list it at all;
    `extra_permissions`: what widens it (checked by the function, e.g. another chat)."""

    name: str
    description: str
    arguments: type[BaseModel]
    function: ToolFunction
    permissions: frozenset[str] = frozenset()
    extra_permissions: frozenset[str] = frozenset()
    # `clock`: the model needs today's date and time to use this tool (the loop adds them to the
    # system prompt, docs/tools.md). `command`: a slash command (`/subscribe`) that runs the tool
    # with no arguments and without the model when it is the turn's last message; the user then
    # gets `command_reply`, or the tool's error.
    clock: bool = False
    command: str | None = None
    command_reply: str | None = None

    def __post_init__(self) -> None:
        if not _TOOL_NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r} must match {_TOOL_NAME.pattern}")
        if not self.description.strip():
            raise ValueError(f"tool {self.name!r} needs a description: the model reads it")
        object.__setattr__(self, "permissions", frozenset(self.permissions))
        object.__setattr__(self, "extra_permissions", frozenset(self.extra_permissions))
        if self.command is not None:
            if not re.match(r"^/[a-z][a-z0-9_-]{0,31}$", self.command):
                raise ValueError(f"tool {self.name!r}: command {self.command!r} is not /lowercase")
            if not self.command_reply:
                raise ValueError(f"tool {self.name!r}: a command needs a command_reply")

    def spec(self) -> ToolSpec:
        """What the model is shown: name, description, JSON schema of the arguments."""
        schema = self.arguments.model_json_schema()
        schema.pop("title", None)  # the name already says it; fewer tokens for small models
        return ToolSpec(name=self.name, description=self.description, parameters=schema)
