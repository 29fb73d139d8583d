"""Agents: definitions from `configs/agents.yaml`, the Router that picks one per turn, and the
agent turn itself (prompt, one engine call, reply parts). Ray-free; see docs/agents.md."""

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
    "KnowledgeBase",
    "KnowledgeEntry",
    "KnowledgeError",
    "KnowledgeMatch",
    "KnowledgeSpec",
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
]
