"""The Router actor and the agent workers (a pool per agent).

Both build their engines from `agents.yaml` inside the actor, so a llama.cpp model is loaded by the
process that uses it. Workers also get the Store, Outbox and Scheduler actor handles, the operator
number and the default time zone: the agent's tools reach the platform through typed clients of
those actors (`PlatformToolServices` over `ToolStoreClient`, `ToolOutboxClient` and, for the
reminder tools, `JobsClient`).

A turn crosses from the SessionHost to a worker as a Ray streaming generator (`turn`; the
SessionHost's side is `actors.clients.AgentPool`): the worker yields each tool call's `started` /
`finished` as it happens and the `AgentTurnResult` last. Cancelling the remote generator cancels
the agent's task in the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from actors.clients import JobsClient, ToolOutboxClient, ToolStoreClient
from actors.llm_client import DeploymentEngine
from actors.metrics import start_actor_metrics
from whatsray import metrics
from whatsray.agents import (
    Agent,
    AgentTurnRequest,
    AgentTurnResult,
    JournalEvent,
    Router,
    load_agents_config,
    stream_turn,
)
from whatsray.agents.backpressure import AgentLoad, gate
from whatsray.agents.config import AgentsConfig, EngineSpec
from whatsray.agents.router import RouteDecision, RouteRequest
from whatsray.calls import calls
from whatsray.llm import ChatEngine, build_engine
from whatsray.metrics.refresh import report_forever
from whatsray.observability.logs import LogSetup, configure_logging
from whatsray.session.turns import ToolCallJournal
from whatsray.tools import PlatformToolServices, ToolServices


def load_config(path: str, engine_override: str | None) -> AgentsConfig:
    config = load_agents_config(Path(path))
    return config.with_engine(engine_override) if engine_override else config


def build_actor_engine(spec: EngineSpec, llm: Mapping[str, Any] | None) -> ChatEngine:
    """An engine inside an actor: a `vllm` engine is the app's LLM deployment (through its
    handle, batched with every other chat), never a model loaded in this process."""
    if spec.engine == "vllm":
        if not llm or spec.key not in llm:
            raise ValueError(f"engine {spec.key!r}: no vLLM deployment was started for it")
        return DeploymentEngine(llm[spec.key], name=spec.key)
    return build_engine(spec.as_dict())


class RouterActor:
    def __init__(
        self,
        agents_file: str,
        engine_override: str | None = None,
        *,
        llm: Mapping[str, Any] | None = None,
        logs: LogSetup | None = None,
    ) -> None:
        start_actor_metrics("router")
        configure_logging(logs)  # first: what the constructor logs is formatted and redacted
        config = load_config(agents_file, engine_override)
        spec = config.classifier_engine()
        self._router = Router(config, build_actor_engine(spec, llm) if spec else None)

    async def route(self, request: RouteRequest) -> RouteDecision:
        return await self._router.route(request)

    async def call_counts(self) -> dict[str, int]:
        return calls.snapshot()


def tool_services(
    store: Any,
    outboxes: Mapping[str, Any] | None,
    operator_number: str | None,
    scheduler: Any = None,
    default_timezone: str = "UTC",
) -> ToolServices | None:
    """The tools' view of the platform, over actor handles; None without a store. Without a
    scheduler handle the reminder tools answer that reminders are not available."""
    if store is None:
        return None
    outbox_clients = {pnid: ToolOutboxClient(h) for pnid, h in (outboxes or {}).items()}
    store_client = ToolStoreClient(store)
    return PlatformToolServices(
        store_client,
        outbox_clients.__getitem__,
        operator_number=operator_number,
        jobs=None if scheduler is None else JobsClient(scheduler),
        default_timezone=default_timezone,
        opt_in=store_client,
    )


class AgentWorker:
    def __init__(
        self,
        agents_file: str,
        agent: str,
        engine_override: str | None = None,
        *,
        store: Any = None,
        outboxes: Mapping[str, Any] | None = None,
        operator_number: str | None = None,
        llm: Mapping[str, Any] | None = None,
        scheduler: Any = None,
        default_timezone: str = "UTC",
        logs: LogSetup | None = None,
        metrics_every_s: float = 5.0,
    ) -> None:
        start_actor_metrics("agent_worker")
        configure_logging(logs)  # first: what the constructor logs is formatted and redacted
        config = load_config(agents_file, engine_override)
        spec = config.agent(agent)
        engine = build_actor_engine(config.engine_for(agent), llm)
        fallback_spec = config.fallback_engine_for(agent)
        fallback = build_actor_engine(fallback_spec, llm) if fallback_spec else None
        services = tool_services(store, outboxes, operator_number, scheduler, default_timezone)
        # Turns queue here, fair across chats, for a slot on the engine (backpressure).
        self._agent = gate(Agent(spec, engine, services=services), spec.backpressure, fallback)
        self._name = agent
        loop = asyncio.get_running_loop()
        self._reporting = loop.create_task(report_forever(self._report_metrics, metrics_every_s))

    async def _report_metrics(self) -> None:
        load = await self._agent.load()
        engine_waiting = load.engine.waiting if load.engine is not None else 0
        metrics.agent_slots_in_use.set(load.running, agent=self._name)
        metrics.agent_turns_waiting.set(load.waiting + engine_waiting, agent=self._name)

    async def turn(
        self, request: AgentTurnRequest
    ) -> AsyncIterator[JournalEvent | AgentTurnResult]:
        """A turn as a stream (call with `num_returns="streaming"`): journal events, then the
        result. Cancelling the remote generator cancels the turn here."""
        async for item in stream_turn(self._agent, request):
            yield item

    async def run(self, request: AgentTurnRequest) -> AgentTurnResult:
        """A turn in one call, for agents without tools: nothing to journal on the way (one
        object back instead of a stream of them). Cancelling the call cancels the turn."""
        return await self._agent.run(request, ToolCallJournal())

    async def load(self) -> AgentLoad:
        """This worker's inference load (its admission queue and its engine)."""
        return await self._agent.load()

    async def call_counts(self) -> dict[str, int]:
        return calls.snapshot()
