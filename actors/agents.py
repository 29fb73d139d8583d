"""The Router actor and the agent workers (a pool per agent).

Both build their engines from `agents.yaml` inside the actor, so a llama.cpp model is loaded by the
process that uses it. Workers also get the Store, Outbox and Scheduler actor handles, the operator
number and the default time zone: the agent's tools reach the platform through them
(`PlatformToolServices` over `ActorProxy`s; the scheduler's proxy is the reminder tools'
`JobsPort`).

A turn crosses from the SessionHost to a worker as a Ray streaming generator: the worker yields
each tool call's `started` / `finished` as it happens and the `AgentTurnResult` last; `AgentPool`
applies the events to the session's journal. When the session cancels the turn (an interrupt, a
timeout), the pool cancels the remote generator, which cancels the agent's task in the worker.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import ray

from actors.llm_client import DeploymentEngine
from actors.proxy import ActorProxy, Forwarder
from whatsray.agents import (
    Agent,
    AgentTurnRequest,
    AgentTurnResult,
    JournalEvent,
    Router,
    load_agents_config,
    stream_turn,
)
from whatsray.agents.backpressure import AgentLoad, combine_loads, gate
from whatsray.agents.config import AgentsConfig, EngineSpec
from whatsray.llm import ChatEngine, build_engine
from whatsray.scheduling import JobsPort
from whatsray.session.turns import ToolCallJournal
from whatsray.tools import OptInStore, PlatformToolServices, ToolOutbox, ToolServices, ToolStore


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
    ) -> None:
        config = load_config(agents_file, engine_override)
        spec = config.classifier_engine()
        self._router = Router(config, build_actor_engine(spec, llm) if spec else None)
        self._forward = Forwarder(self._router, ("route",))

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self._forward.call(method, *args, **kwargs)

    async def counts(self) -> dict[str, Any]:
        return dict(self._router.counts)


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
    proxies = {pnid: cast(ToolOutbox, ActorProxy(h)) for pnid, h in (outboxes or {}).items()}
    store_proxy = ActorProxy(store)
    return PlatformToolServices(
        cast(ToolStore, store_proxy),
        proxies.__getitem__,
        operator_number=operator_number,
        jobs=None if scheduler is None else cast(JobsPort, ActorProxy(scheduler)),
        default_timezone=default_timezone,
        opt_in=cast(OptInStore, store_proxy),
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
    ) -> None:
        config = load_config(agents_file, engine_override)
        spec = config.agent(agent)
        engine = build_actor_engine(config.engine_for(agent), llm)
        fallback_spec = config.fallback_engine_for(agent)
        fallback = build_actor_engine(fallback_spec, llm) if fallback_spec else None
        services = tool_services(store, outboxes, operator_number, scheduler, default_timezone)
        # Turns queue here, fair across chats, for a slot on the engine (backpressure).
        self._agent = gate(Agent(spec, engine, services=services), spec.backpressure, fallback)
        self._forward = Forwarder(self._agent, ("run", "load"))

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self._forward.call(method, *args, **kwargs)

    async def turn(
        self, request: AgentTurnRequest
    ) -> AsyncIterator[JournalEvent | AgentTurnResult]:
        """A turn as a stream (call with `num_returns="streaming"`): journal events, then the
        result. Cancelling the remote generator cancels the turn here."""
        async for item in stream_turn(self._agent, request):
            yield item


class AgentPool:
    """`AgentsPort` over actor handles: round robin across each agent's workers."""

    def __init__(self, workers: Mapping[str, Sequence[Any]]) -> None:
        self._workers = {name: list(handles) for name, handles in workers.items()}
        self._next: dict[str, Iterator[Any]] = {
            name: itertools.cycle(handles) for name, handles in self._workers.items()
        }

    async def run(
        self, agent: str, request: AgentTurnRequest, journal: ToolCallJournal
    ) -> AgentTurnResult:
        worker = next(self._next[agent])
        stream = worker.turn.options(num_returns="streaming").remote(request)
        result: AgentTurnResult | None = None
        try:
            async for ref in stream:
                item = await ref
                if isinstance(item, JournalEvent):
                    item.apply(journal)
                elif isinstance(item, AgentTurnResult):
                    result = item
        except asyncio.CancelledError:
            ray.cancel(stream)  # the turn stops in the worker too (its tool call is cancelled)
            raise
        if result is None:
            raise RuntimeError(f"agent {agent!r} ended its turn {request.turn_id} without a result")
        return result

    async def load(self, agent: str) -> AgentLoad:
        """The agent's inference load over all its workers."""
        workers = self._workers[agent]
        loads = await asyncio.gather(*(w.call.remote("load") for w in workers))
        return combine_loads(agent, loads)

    def __reduce__(self) -> tuple[Any, ...]:
        return (AgentPool, (self._workers,))
