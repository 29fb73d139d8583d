"""Agents: definitions from `configs/agents.yaml`, the Router that picks one per turn, and the
agent turn itself (prompt, the model and its tools in a bounded loop, reply parts). Ray-free;
see docs/agents.md and docs/tools.md."""

from __future__ import annotations

from whatsray.agents.agent import (
    Agent,
    AgentOutcome,
    AgentTurnRequest,
    AgentTurnResult,
    HistoryLike,
    input_text,
)
from whatsray.agents.build import AgentRuntime, build_runtime
from whatsray.agents.config import (
    AgentsConfig,
    AgentsConfigError,
    AgentSpec,
    DoubleTextingSpec,
    EngineSpec,
    KnowledgeSpec,
    RouterSpec,
    RoutingRules,
    load_agents_config,
    parse_agents_config,
)
from whatsray.agents.knowledge import KnowledgeBase, KnowledgeEntry, KnowledgeError, KnowledgeMatch
from whatsray.agents.replies import split_reply
from whatsray.agents.router import RouteDecision, Router, RouteRequest, parse_classifier_answer
from whatsray.agents.streaming import JournalEvent, RecordingJournal, stream_turn

__all__ = [
    "Agent",
    "AgentOutcome",
    "AgentRuntime",
    "AgentSpec",
    "AgentTurnRequest",
    "AgentTurnResult",
    "AgentsConfig",
    "AgentsConfigError",
    "DoubleTextingSpec",
    "EngineSpec",
    "HistoryLike",
    "JournalEvent",
    "KnowledgeBase",
    "KnowledgeEntry",
    "KnowledgeError",
    "KnowledgeMatch",
    "KnowledgeSpec",
    "RecordingJournal",
    "RouteDecision",
    "RouteRequest",
    "Router",
    "RouterSpec",
    "RoutingRules",
    "build_runtime",
    "input_text",
    "load_agents_config",
    "parse_agents_config",
    "parse_classifier_answer",
    "split_reply",
    "stream_turn",
]
