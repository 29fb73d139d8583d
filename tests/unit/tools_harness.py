"""Fakes for tool tests: a platform in memory (messages, contacts, a ledger that refuses a
repeated id, an outbox that records dispatches) and helpers to build agents with tools."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from whatsray.agents import Agent, AgentTurnRequest, parse_agents_config
from whatsray.agents.config import AgentSpec
from whatsray.llm import ChatEngine
from whatsray.outbox.ledger import OutboundItem
from whatsray.store.records import Contact, MessageRecord
from whatsray.tools import BUILTIN_TOOLS, PlatformToolServices, ToolRegistry
from whatsray.whatsapp.events import ChatKey

PNID = "106540352242922"
USER = "16505551234"
CHAT = ChatKey(phone_number_id=PNID, user=USER)
OTHER = ChatKey(phone_number_id=PNID, user="15550001111")


def message(chat: ChatKey, seq: int, text: str, direction: str = "in") -> MessageRecord:
    return MessageRecord(
        chat=str(chat),
        id=f"m{seq}",
        seq=seq,
        direction=direction,  # type: ignore[arg-type]
        type="text",
        text=text,
        created_at=1000.0 + seq,
        updated_at=1000.0 + seq,
    )


@dataclass
class FakeStore:
    """`ToolStore` in memory: the ledger refuses a repeated outbound id, like the real one."""

    messages: dict[str, list[MessageRecord]] = field(default_factory=dict)
    contacts: list[Contact] = field(default_factory=list)
    recorded: dict[str, OutboundItem] = field(default_factory=dict)

    async def get_messages(
        self, chat: ChatKey | str, limit: int = 50, before: int | None = None
    ) -> list[MessageRecord]:
        records = [m for m in self.messages.get(str(chat), []) if before is None or m.seq < before]
        return records[-limit:]

    async def search_contacts(self, q: str, limit: int = 20) -> list[Contact]:
        found = [c for c in self.contacts if q.lower() in (c.profile_name or "").lower()]
        return found[:limit]

    async def record_outbound(self, item: OutboundItem) -> bool:
        if item.outbound_id in self.recorded:
            return False
        self.recorded[item.outbound_id] = item
        return True


@dataclass
class FakeOutbox:
    dispatched: list[OutboundItem] = field(default_factory=list)
    fresh: list[bool | None] = field(default_factory=list)  # per item: recorded just now?

    async def dispatch(
        self, items: Sequence[OutboundItem], fresh: Sequence[bool] | None = None
    ) -> None:
        self.dispatched.extend(items)
        self.fresh.extend(fresh if fresh is not None else [None] * len(items))


@dataclass
class FakePlatform:
    store: FakeStore = field(default_factory=FakeStore)
    outbox: FakeOutbox = field(default_factory=FakeOutbox)
    operator: str | None = "491510000000"

    @property
    def services(self) -> PlatformToolServices:
        return PlatformToolServices(
            self.store, lambda _pnid: self.outbox, operator_number=self.operator
        )

    def sent_to(self, chat: ChatKey) -> list[str]:
        """Texts recorded for `chat` (each id once, in order)."""
        return [
            item.body["text"]["body"]
            for item in self.store.recorded.values()
            if item.chat == str(chat)
        ]


def agent_spec(
    tools: Sequence[str] = ("get_messages", "send_message", "handoff_to_human"),
    registry: ToolRegistry = BUILTIN_TOOLS,
    **fields: Any,
) -> AgentSpec:
    body = {
        "name": "support",
        "description": "d",
        "system_prompt": "You help.",
        "engine": "test",
        "tools": list(tools),
        **fields,
    }
    data = {
        "engines": {"test": {"engine": "scripted"}},
        "router": {"default_agent": "support"},
        "agents": [body],
    }
    return parse_agents_config(data, tool_registry=registry).agent("support")


def make_agent(
    engine: ChatEngine,
    platform: FakePlatform | None = None,
    *,
    registry: ToolRegistry = BUILTIN_TOOLS,
    monotonic: Any = None,
    **fields: Any,
) -> Agent:
    spec = agent_spec(registry=registry, **fields)
    extra: dict[str, Any] = {"monotonic": monotonic} if monotonic is not None else {}
    services = platform.services if platform is not None else None
    return Agent(spec, engine, tools=registry, services=services, **extra)


def turn(*inputs: str, turn_id: str = "turn-1", **extra: Any) -> AgentTurnRequest:
    return AgentTurnRequest(turn_id, str(CHAT), inputs, **extra)


def calls(*items: tuple[str, Any]) -> dict[str, Any]:
    """A scripted reply calling tools: `calls(("get_messages", {"limit": 3}))`."""
    return {"tool_calls": [{"name": name, "arguments": args} for name, args in items]}
