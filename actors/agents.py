"""The Router actor and the agent workers (a pool per agent).

Both build their engines from `agents.yaml` inside the actor, so a llama.cpp model is loaded by the
process that uses it. `AgentPool` is the caller's side: it spreads turns over an agent's workers.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from actors.proxy import Forwarder
from whatsray.agents import Agent, AgentTurnRequest, AgentTurnResult, Router, load_agents_config
from whatsray.agents.config import AgentsConfig
from whatsray.llm import build_engine


def load_config(path: str, engine_override: str | None) -> AgentsConfig:
    config = load_agents_config(Path(path))
    return config.with_engine(engine_override) if engine_override else config


class RouterActor:
    def __init__(self, agents_file: str, engine_override: str | None = None) -> None:
        config = load_config(agents_file, engine_override)
        spec = config.classifier_engine()
        self._router = Router(config, build_engine(spec.as_dict()) if spec else None)
        self._forward = Forwarder(self._router, ("route",))

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self._forward.call(method, *args, **kwargs)

    async def counts(self) -> dict[str, Any]:
        return dict(self._router.counts)


class AgentWorker:
    def __init__(self, agents_file: str, agent: str, engine_override: str | None = None) -> None:
        config = load_config(agents_file, engine_override)
        engine = build_engine(config.engine_for(agent).as_dict())
        self._agent = Agent(config.agent(agent), engine)
        self._forward = Forwarder(self._agent, ("run",))

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self._forward.call(method, *args, **kwargs)


class AgentPool:
    """`AgentsPort` over actor handles: round robin across each agent's workers."""

    def __init__(self, workers: Mapping[str, Sequence[Any]]) -> None:
        self._workers = {name: list(handles) for name, handles in workers.items()}
        self._next: dict[str, Iterator[Any]] = {
            name: itertools.cycle(handles) for name, handles in self._workers.items()
        }

    async def run(self, agent: str, request: AgentTurnRequest) -> AgentTurnResult:
        result: AgentTurnResult = await next(self._next[agent]).call.remote("run", request)
        return result

    def __reduce__(self) -> tuple[Any, ...]:
        return (AgentPool, (self._workers,))
