"""Everything `agents.yaml` describes, built and wired: engines, agents and the router.

The Ray edge may build its pieces one by one instead (an agent pool per agent, the router in its
own actor); this is the whole set in one process, for local runs and tests. Engines are shared:
agents naming the same engine (and model) use one engine object, so one llama.cpp model is loaded
once. `close()` closes each engine once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from whatsray.agents.agent import Agent, AgentTurnRequest, AgentTurnResult
from whatsray.agents.backpressure import AgentLoad, GatedAgent, combine_loads, gate
from whatsray.agents.config import AgentsConfig, EngineSpec
from whatsray.agents.router import Router
from whatsray.llm import ChatEngine, build_engine
from whatsray.session.turns import ToolCallJournal
from whatsray.tools import BUILTIN_TOOLS, ToolRegistry, ToolServices

__all__ = ["AgentRuntime", "EngineFactory", "build_runtime"]

EngineFactory = Callable[[Mapping[str, Any]], ChatEngine]


@dataclass
class AgentRuntime:
    config: AgentsConfig
    agents: dict[str, Agent]
    router: Router
    engines: list[ChatEngine] = field(default_factory=list)  # owned: closed by `close()`
    gated: dict[str, GatedAgent] = field(default_factory=dict)  # each agent behind its queue

    def __post_init__(self) -> None:
        for name, agent in self.agents.items():
            self.gated.setdefault(name, gate(agent, agent.spec.backpressure, None))

    async def run(
        self, agent: str, request: AgentTurnRequest, journal: ToolCallJournal | None = None
    ) -> AgentTurnResult:
        """Run a turn on the named agent (the pipeline's `AgentsPort`); in one process the
        session's journal is handed straight to the agent."""
        return await self.gated[agent].run(request, journal)

    async def load(self, agent: str) -> AgentLoad:
        return combine_loads(agent, [await self.gated[agent].load()])

    async def close(self) -> None:
        engines, self.engines = self.engines, []
        for engine in engines:
            await engine.close()


async def build_runtime(
    config: AgentsConfig,
    *,
    engine_factory: EngineFactory = build_engine,
    services: ToolServices | None = None,
    tools: ToolRegistry = BUILTIN_TOOLS,
    now: Callable[[], float] = time.time,
) -> AgentRuntime:
    """Build every engine, agent and the router; if anything fails, close what was built.
    `services` is what the agents' tools reach (the store, the outboxes, the operator); `now`
    is the agents' clock (the prompt's date, reminder times; a fake one in `whatsray test`)."""
    cache: dict[str, ChatEngine] = {}
    built: list[ChatEngine] = []

    def engine_for(spec: EngineSpec) -> ChatEngine:
        key = repr(sorted(spec.as_dict().items()))
        if key not in cache:
            cache[key] = engine_factory(spec.as_dict())
            built.append(cache[key])
        return cache[key]

    try:
        agents = {
            name: Agent(
                config.agent(name),
                engine_for(config.engine_for(name)),
                tools=tools,
                services=services,
                now=now,
            )
            for name in config.names
        }
        gated = {
            name: gate(
                agent,
                agent.spec.backpressure,
                None if (fb := config.fallback_engine_for(name)) is None else engine_for(fb),
            )
            for name, agent in agents.items()
        }
        classifier_spec = config.classifier_engine()
        classifier = engine_for(classifier_spec) if classifier_spec is not None else None
        router = Router(config, classifier)
    except BaseException:
        for engine in built:
            await engine.close()
        raise
    return AgentRuntime(config, agents, router, built, gated)
