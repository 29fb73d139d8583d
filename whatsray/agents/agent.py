"""One agent turn: the prompt from the history window and the new inputs, one engine call, the
reply cut into WhatsApp-sized parts.

A turn never raises for an engine failure and never waits past the agent's `timeout_s`: the user
gets the agent's apology and the result says `engine_error`. The FAQ agent answers its fixed
"I don't know" reply without calling the model when its knowledge has nothing relevant.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from whatsray.agents.config import AGENT_COMMAND, AgentsConfig, AgentSpec
from whatsray.agents.knowledge import KnowledgeBase, KnowledgeMatch
from whatsray.agents.replies import split_reply
from whatsray.llm import ChatEngine, ChatMessage, LLMError, Usage
from whatsray.whatsapp.events import MessageEvent

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
    `history`: earlier messages, oldest first; the agent keeps only its window of them."""

    turn_id: str
    chat: str
    inputs: tuple[str, ...]
    history: tuple[HistoryLike, ...] = ()

    @classmethod
    def from_events(
        cls,
        turn_id: str,
        chat: str,
        events: Iterable[MessageEvent],
        history: Iterable[HistoryLike] = (),
    ) -> AgentTurnRequest:
        return cls(turn_id, chat, tuple(input_text(e) for e in events), tuple(history))


class AgentOutcome(StrEnum):
    OK = "ok"  # the model answered
    NO_KNOWLEDGE = "no_knowledge"  # FAQ: nothing relevant found; the fixed reply, no model call
    GREETING = "greeting"  # a bare command (`/faq`): the agent's greeting, no model call
    EMPTY_REPLY = "empty_reply"  # the model answered nothing: the agent's fallback text
    ENGINE_ERROR = "engine_error"  # the engine failed or timed out: the agent's apology


@dataclass(frozen=True, slots=True)
class AgentTurnResult:
    """What a turn produced. `reply_parts` is never empty and each part fits one WhatsApp text."""

    agent: str
    reply_parts: tuple[str, ...]
    outcome: AgentOutcome
    usage: Usage = field(default_factory=Usage)
    latency_ms: float = 0.0  # the engine call, as measured by the agent
    engine: str | None = None
    model: str | None = None
    finish_reason: str | None = None
    error: str | None = None  # for ENGINE_ERROR: what went wrong
    error_type: str | None = None  # the exception's class name (`LLMTimeout`...)
    knowledge_ids: tuple[str, ...] = ()  # FAQ entries given to the model

    @property
    def called_engine(self) -> bool:
        return self.outcome in (
            AgentOutcome.OK,
            AgentOutcome.EMPTY_REPLY,
            AgentOutcome.ENGINE_ERROR,
        )


class Agent:
    """One agent definition bound to its engine (and knowledge). Plain class; a pool of Ray
    actors wraps it later. Holds no per-chat state: turns of many chats may run concurrently."""

    def __init__(
        self,
        spec: AgentSpec,
        engine: ChatEngine,
        *,
        knowledge: KnowledgeBase | None = None,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        if spec.knowledge is not None and knowledge is None:
            knowledge = KnowledgeBase.load(spec.knowledge.file)
        self.spec = spec
        self.engine = engine
        self.knowledge = knowledge
        self._monotonic = monotonic
        self._commands = frozenset(spec.routing.commands)

    @classmethod
    def from_config(cls, config: AgentsConfig, name: str, engine: ChatEngine) -> Agent:
        return cls(config.agent(name), engine)

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
        """System prompt (+ FAQ entries), the history window, then each input as a user message."""
        system = self.spec.system_prompt
        if knowledge:
            entries = "\n\n".join(m.entry.as_context() for m in knowledge)
            system = f"{system}\n\n{_KNOWLEDGE_INSTRUCTIONS}\n\n{entries}"
        inputs = [ChatMessage.user(t) for t in self._inputs(request)]
        return [ChatMessage.system(system), *self.history_window(request.history), *inputs]

    def _inputs(self, request: AgentTurnRequest) -> list[str]:
        return [t for t in (self.strip_command(i) for i in request.inputs) if t]

    # --- the turn -------------------------------------------------------------------------------

    async def run(self, request: AgentTurnRequest) -> AgentTurnResult:
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
        knowledge_ids = tuple(m.entry.id for m in matches)
        timeout = self.spec.timeout_s
        started = self._monotonic()
        try:
            async with asyncio.timeout(timeout):
                reply = await self.engine.chat(
                    messages,
                    max_tokens=self.spec.max_tokens,
                    temperature=self.spec.temperature,
                    timeout_s=timeout,
                )
        except (
            Exception
        ) as exc:  # LLMError, TimeoutError, or an engine bug: never the user's problem
            latency_ms = (self._monotonic() - started) * 1000.0
            if isinstance(exc, TimeoutError) and not isinstance(exc, LLMError):
                error = f"no answer within {timeout} s"
            else:
                error = str(exc) or type(exc).__name__
            log_call = log.warning if isinstance(exc, LLMError | TimeoutError) else log.exception
            log_call("agent %s: engine failed in turn %s: %s", self.name, request.turn_id, error)
            return AgentTurnResult(
                agent=self.name,
                reply_parts=_parts(self.spec.apology),
                outcome=AgentOutcome.ENGINE_ERROR,
                latency_ms=latency_ms,
                engine=getattr(self.engine, "name", None),
                error=error,
                error_type=type(exc).__name__,
                knowledge_ids=knowledge_ids,
            )
        latency_ms = (self._monotonic() - started) * 1000.0
        parts = split_reply(reply.content)
        outcome = AgentOutcome.OK
        if not parts:
            parts, outcome = _parts(self.spec.empty_reply), AgentOutcome.EMPTY_REPLY
        return AgentTurnResult(
            agent=self.name,
            reply_parts=parts,
            outcome=outcome,
            usage=reply.usage,
            latency_ms=latency_ms,
            engine=reply.engine or getattr(self.engine, "name", None),
            model=reply.model or None,
            finish_reason=reply.finish_reason,
            knowledge_ids=knowledge_ids,
        )

    def _fixed(self, text: str, outcome: AgentOutcome) -> AgentTurnResult:
        return AgentTurnResult(agent=self.name, reply_parts=_parts(text), outcome=outcome)


def _parts(text: str) -> tuple[str, ...]:
    """A configured text as reply parts; never empty, so WhatsApp never gets a blank message."""
    return split_reply(text) or (DEFAULT_GREETING,)
