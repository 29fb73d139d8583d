"""One agent turn: the prompt from the history window and the new inputs, the model (with the
agent's tools, in a bounded loop: `tool_loop.py`), the reply cut into WhatsApp-sized parts.

A turn never raises for an engine or tool failure and never waits past the agent's bounds: the user
gets the agent's apology and the result says `engine_error`. The FAQ agent answers its fixed
"I don't know" reply without calling the model when its knowledge has nothing relevant.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from whatsray.agents.config import AGENT_COMMAND, AgentsConfig, AgentSpec
from whatsray.agents.knowledge import KnowledgeBase, KnowledgeMatch
from whatsray.agents.replies import split_reply
from whatsray.agents.tool_loop import LoopResult, ToolLoop, earlier_call_messages
from whatsray.llm import ChatEngine, ChatMessage, Usage
from whatsray.outbox.window import describe_window
from whatsray.session.turns import ToolCall, ToolCallJournal
from whatsray.tools import (
    BUILTIN_TOOLS,
    ToolContext,
    ToolRegistry,
    ToolServices,
    UnavailableToolServices,
)
from whatsray.whatsapp.events import ChatKey, MessageEvent

__all__ = [
    "DEFAULT_GREETING",
    "Agent",
    "AgentOutcome",
    "AgentTurnRequest",
    "AgentTurnResult",
    "HistoryLike",
    "input_text",
]

log = logging.getLogger(__name__)

DEFAULT_GREETING = "Hi! How can I help you?"
_KNOWLEDGE_INSTRUCTIONS = (
    "Answer using only the FAQ entries below. If they do not answer the question, say that you "
    "don't know and that a person from the team will follow up. Do not make anything up."
)


class HistoryLike(Protocol):
    """A message of the history window (`whatsray.session.state.HistoryMessage` fits)."""

    @property
    def role(self) -> str: ...

    @property
    def text(self) -> str: ...


def input_text(event: MessageEvent) -> str:
    """A user's message as the agent reads it: the words, or `[image]` and the like for media."""
    return event.text or f"[{event.raw_type or event.type.value}]"


@dataclass(frozen=True, slots=True)
class AgentTurnRequest:
    """`inputs`: the turn's new user messages, oldest first (several when coalesced).
    `history`: earlier messages, oldest first; the agent keeps only its window of them.
    `earlier_tool_calls`: what interrupted attempts of this turn ran (each with its result,
    `cancelled` where it was stopped): the model is shown them, so it does not repeat a send.
    `last_inbound_at`: when the user last wrote (unix s): the prompt says how much of the 24-hour
    window is left (None: unknown, nothing is said)."""

    turn_id: str
    chat: str
    inputs: tuple[str, ...]
    history: tuple[HistoryLike, ...] = ()
    earlier_tool_calls: tuple[ToolCall, ...] = ()
    last_inbound_at: float | None = None

    @classmethod
    def from_events(
        cls,
        turn_id: str,
        chat: str,
        events: Iterable[MessageEvent],
        history: Iterable[HistoryLike] = (),
        earlier_tool_calls: Iterable[ToolCall] = (),
        last_inbound_at: float | None = None,
    ) -> AgentTurnRequest:
        inputs = tuple(input_text(e) for e in events)
        return cls(
            turn_id, chat, inputs, tuple(history), tuple(earlier_tool_calls), last_inbound_at
        )


class AgentOutcome(StrEnum):
    OK = "ok"  # the model answered
    NO_KNOWLEDGE = "no_knowledge"  # FAQ: nothing relevant found; the fixed reply, no model call
    GREETING = "greeting"  # a bare command (`/faq`): the agent's greeting, no model call
    EMPTY_REPLY = "empty_reply"  # the model answered nothing: the agent's fallback text
    ENGINE_ERROR = "engine_error"  # the engine failed or timed out: the agent's apology


@dataclass(frozen=True, slots=True)
class AgentTurnResult:
    """What a turn produced. `reply_parts` is never empty and each part fits one WhatsApp text.

    `tool_calls`: the calls of this turn, in order, each with its result and status. `handoff`:
    a tool handed the chat to a person (the session then sets the chat's handoff flag)."""

    agent: str
    reply_parts: tuple[str, ...]
    outcome: AgentOutcome
    usage: Usage = field(default_factory=Usage)  # summed over the turn's engine calls
    latency_ms: float = 0.0  # the model and tool loop, as measured by the agent
    engine: str | None = None
    model: str | None = None
    finish_reason: str | None = None
    error: str | None = None  # for ENGINE_ERROR: what went wrong
    error_type: str | None = None  # the exception's class name (`LLMTimeout`...)
    knowledge_ids: tuple[str, ...] = ()  # FAQ entries given to the model
    tool_calls: tuple[ToolCall, ...] = ()
    handoff: bool = False
    engine_calls: int = 0
    tools_stopped: str | None = None  # why tools were withdrawn early: steps, time, bad_calls...

    @property
    def called_engine(self) -> bool:
        return self.outcome in (
            AgentOutcome.OK,
            AgentOutcome.EMPTY_REPLY,
            AgentOutcome.ENGINE_ERROR,
        )


class Agent:
    """One agent definition bound to its engine, knowledge and tools. Plain class; a pool of Ray
    actors wraps it. Holds no per-chat state: turns of many chats may run concurrently.

    `tools` is the registry the agent's `tools:` names come from; `services` is what those tools
    reach of the platform (the store, the outboxes, the operator number). Without services, tools
    that need the platform answer the model with an error (tests, demos)."""

    def __init__(
        self,
        spec: AgentSpec,
        engine: ChatEngine,
        *,
        knowledge: KnowledgeBase | None = None,
        monotonic: Callable[[], float] = time.perf_counter,
        tools: ToolRegistry = BUILTIN_TOOLS,
        services: ToolServices | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        if spec.knowledge is not None and knowledge is None:
            knowledge = KnowledgeBase.load(spec.knowledge.file)
        missing = [name for name in spec.tools if name not in tools]
        if missing:
            raise ValueError(f"agent {spec.name!r} lists unknown tools: {', '.join(missing)}")
        self.spec = spec
        self.engine = engine
        self.knowledge = knowledge
        self.tools = tools
        self.services: ToolServices = services or UnavailableToolServices()
        self._monotonic = monotonic
        self._now = now
        self._commands = frozenset(spec.routing.commands)

    @classmethod
    def from_config(
        cls,
        config: AgentsConfig,
        name: str,
        engine: ChatEngine,
        *,
        services: ToolServices | None = None,
    ) -> Agent:
        return cls(config.agent(name), engine, services=services)

    @property
    def name(self) -> str:
        return self.spec.name

    # --- the prompt ------------------------------------------------------------------------------

    def strip_command(self, text: str) -> str:
        """The text without a leading routing command (`/faq ...`, `/agent faq ...`)."""
        words = text.strip().split(maxsplit=2)
        if not words:
            return ""
        first = words[0].lower()
        if first == AGENT_COMMAND:
            return words[2] if len(words) > 2 else ""
        if first in self._commands:
            return text.strip()[len(words[0]) :].strip()
        return text.strip()

    def history_window(self, history: Sequence[HistoryLike]) -> list[ChatMessage]:
        """The last `history_messages` of the history as chat messages, oldest first."""
        limit = self.spec.history_messages
        if limit <= 0:
            return []
        out = []
        for item in history[-limit:]:
            if item.role in ("user", "assistant") and item.text.strip():
                out.append(
                    ChatMessage(
                        role="user" if item.role == "user" else "assistant", content=item.text
                    )
                )
        return out

    def build_messages(
        self, request: AgentTurnRequest, knowledge: Sequence[KnowledgeMatch] = ()
    ) -> list[ChatMessage]:
        """System prompt (+ the 24-hour window left, + FAQ entries), the history window, then each
        input as a user message."""
        system = self.spec.system_prompt
        if request.last_inbound_at is not None:
            system = f"{system}\n\n{describe_window(request.last_inbound_at, self._now())}"
        if knowledge:
            entries = "\n\n".join(m.entry.as_context() for m in knowledge)
            system = f"{system}\n\n{_KNOWLEDGE_INSTRUCTIONS}\n\n{entries}"
        inputs = [ChatMessage.user(t) for t in self._inputs(request)]
        return [ChatMessage.system(system), *self.history_window(request.history), *inputs]

    def _inputs(self, request: AgentTurnRequest) -> list[str]:
        return [t for t in (self.strip_command(i) for i in request.inputs) if t]

    # --- the turn -------------------------------------------------------------------------------

    async def run(
        self,
        request: AgentTurnRequest,
        journal: ToolCallJournal | None = None,
        *,
        engine: ChatEngine | None = None,
    ) -> AgentTurnResult:
        """One turn. `journal` receives every tool call as it starts and finishes (the session's,
        so that an interrupted turn still knows them); `engine` overrides the agent's engine for
        this turn (a fallback engine under backpressure)."""
        inputs = self._inputs(request)
        if not inputs:  # a bare command, or nothing to answer
            return self._fixed(self.spec.greeting or DEFAULT_GREETING, AgentOutcome.GREETING)
        matches: tuple[KnowledgeMatch, ...] = ()
        if self.knowledge is not None and self.spec.knowledge is not None:
            options = self.spec.knowledge
            matches = self.knowledge.search(
                "\n".join(inputs), top_k=options.top_k, min_score=options.min_score
            )
            if not matches:
                return self._fixed(options.unknown_reply, AgentOutcome.NO_KNOWLEDGE)
        messages = self.build_messages(request, matches)
        context = self._context(request)
        loop = ToolLoop(
            self.spec,
            engine or self.engine,
            self.tools,
            journal if journal is not None else ToolCallJournal(),
            context,
            monotonic=self._monotonic,
        )
        if context is not None and request.earlier_tool_calls:
            messages += earlier_call_messages(request.earlier_tool_calls, "earlier_")
            loop.reserve_ids(messages)
        return self._result(await loop.run(messages), tuple(m.entry.id for m in matches))

    def _context(self, request: AgentTurnRequest) -> ToolContext | None:
        """The tools' view of this turn, from the session's request and the agent's config only;
        None when the agent has no tools (or the chat is not a chat key: no tool can act)."""
        if not self.spec.tools:
            return None
        try:
            chat = ChatKey.parse(request.chat)
        except ValueError:
            log.warning(
                "agent %s: turn %s has no chat key; tools are off", self.name, request.turn_id
            )
            return None
        return ToolContext(
            chat=chat,
            turn_id=request.turn_id,
            agent=self.name,
            permissions=frozenset(self.spec.permissions),
            services=self.services,
            now=self._now,
        )

    def _result(self, loop: LoopResult, knowledge_ids: tuple[str, ...]) -> AgentTurnResult:
        spec = self.spec
        handoff = loop.handoff_reason is not None
        if loop.text is None:  # the engine failed (a handed-off chat still says a person comes)
            parts, outcome = (
                _parts(spec.handoff_reply if handoff else spec.apology),
                (AgentOutcome.ENGINE_ERROR),
            )
        else:
            parts, outcome = split_reply(loop.text), AgentOutcome.OK
            if not parts and handoff:
                parts = _parts(spec.handoff_reply)
            elif not parts:
                parts, outcome = _parts(spec.empty_reply), AgentOutcome.EMPTY_REPLY
        return AgentTurnResult(
            agent=self.name,
            reply_parts=parts,
            outcome=outcome,
            usage=loop.usage,
            latency_ms=loop.latency_ms,
            engine=loop.engine,
            model=loop.model,
            finish_reason=loop.finish_reason,
            error=loop.error,
            error_type=loop.error_type,
            knowledge_ids=knowledge_ids,
            tool_calls=tuple(loop.tool_calls),
            handoff=handoff,
            engine_calls=loop.engine_calls,
            tools_stopped=loop.stopped,
        )

    def _fixed(self, text: str, outcome: AgentOutcome) -> AgentTurnResult:
        return AgentTurnResult(agent=self.name, reply_parts=_parts(text), outcome=outcome)


def _parts(text: str) -> tuple[str, ...]:
    """A configured text as reply parts; never empty, so WhatsApp never gets a blank message."""
    return split_reply(text) or (DEFAULT_GREETING,)
