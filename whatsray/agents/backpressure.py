"""An agent behind its admission queue, with an optional fallback engine, and the load it reports.

`GatedAgent` is what an agent worker runs: turns queue fairly for a slot (`FairAdmission`); with a
fallback engine configured, a turn that waited `fallback_after_s` runs on the fallback instead,
and so does a turn whose engine is down (a transient engine error before any tool ran). `load()`
says how busy inference is, so the host can tell a user "one moment" only when it is saturated.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from whatsray.agents.admission import FairAdmission, SlotTimeout
from whatsray.agents.agent import AgentOutcome, AgentTurnRequest, AgentTurnResult
from whatsray.agents.config import BackpressureSpec
from whatsray.llm import ChatEngine, EngineLoad, ReportsLoad
from whatsray.session.turns import ToolCallJournal

__all__ = ["DEFAULT_CAPACITY", "AgentLoad", "GatedAgent", "RunsTurns", "combine_loads", "gate"]

log = logging.getLogger(__name__)

# Engine failures worth another engine: the primary is down or too slow, not the request bad.
DEFAULT_CAPACITY = 16  # turns at once for an engine that does not say how many it runs

_TRANSIENT_ERRORS = frozenset({"LLMUnavailable", "LLMRateLimited", "LLMTimeout", "TimeoutError"})


class RunsTurns(Protocol):
    """`whatsray.agents.Agent`'s turn method."""

    @property
    def name(self) -> str: ...

    @property
    def engine(self) -> ChatEngine: ...

    async def run(
        self,
        request: AgentTurnRequest,
        journal: ToolCallJournal | None = None,
        *,
        engine: ChatEngine | None = None,
    ) -> AgentTurnResult: ...


@dataclass(frozen=True, slots=True)
class AgentLoad:
    """How busy an agent's inference is (one worker, or a pool combined by `combine_loads`).

    `running`/`waiting` count turns in the admission queues; `engine` is what the engine itself
    reports (vLLM's running and queued requests) when it can tell.
    """

    agent: str
    running: int = 0
    waiting: int = 0
    waiting_chats: int = 0
    capacity: int = 0
    engine: EngineLoad | None = None
    admitted: int = 0
    waited: int = 0
    max_wait_s: float = 0.0
    fallback_turns: int = 0
    workers: int = 1

    @property
    def saturated(self) -> bool:
        """Turns are waiting for inference: in the queues here, or inside the engine."""
        return self.waiting > 0 or (self.engine is not None and self.engine.waiting > 0)

    def as_dict(self) -> dict[str, object]:
        return {
            "agent": self.agent,
            "saturated": self.saturated,
            "running": self.running,
            "waiting": self.waiting,
            "waiting_chats": self.waiting_chats,
            "capacity": self.capacity,
            "engine": None if self.engine is None else self.engine.model_dump(),
            "admitted": self.admitted,
            "waited": self.waited,
            "max_wait_s": round(self.max_wait_s, 3),
            "fallback_turns": self.fallback_turns,
            "workers": self.workers,
        }


class GatedAgent:
    def __init__(
        self,
        agent: RunsTurns,
        capacity: int,
        *,
        fallback: ChatEngine | None = None,
        fallback_after_s: float = 10.0,
    ) -> None:
        self.agent = agent
        self.admission = FairAdmission(capacity)
        self.fallback = fallback
        self.fallback_after_s = fallback_after_s
        self.fallback_turns = 0

    @property
    def name(self) -> str:
        return self.agent.name

    async def run(
        self, request: AgentTurnRequest, journal: ToolCallJournal | None = None
    ) -> AgentTurnResult:
        wait_s = self.fallback_after_s if self.fallback is not None else None
        try:
            async with self.admission.slot(request.chat, wait_s=wait_s):
                result = await self.agent.run(request, journal)
        except SlotTimeout:
            log.info("agent %s: saturated, turn %s on the fallback", self.name, request.turn_id)
            return await self._on_fallback(request, journal)
        if self._worth_falling_back(result):
            log.warning(
                "agent %s: engine failed, turn %s on the fallback", self.name, request.turn_id
            )
            return await self._on_fallback(request, journal)
        return result

    def _worth_falling_back(self, result: AgentTurnResult) -> bool:
        return (
            self.fallback is not None
            and result.outcome is AgentOutcome.ENGINE_ERROR
            and result.error_type in _TRANSIENT_ERRORS
            and not result.tool_calls  # tools already acted: do not run the turn twice
        )

    async def _on_fallback(
        self, request: AgentTurnRequest, journal: ToolCallJournal | None
    ) -> AgentTurnResult:
        assert self.fallback is not None
        self.fallback_turns += 1
        return await self.agent.run(request, journal, engine=self.fallback)

    async def load(self) -> AgentLoad:
        engine_load = None
        engine = self.agent.engine
        if isinstance(engine, ReportsLoad):
            try:
                engine_load = await engine.load()
            except Exception:  # a load report must never fail a health or admin call
                log.warning("agent %s: engine load unavailable", self.name, exc_info=True)
        stats = self.admission.stats()
        return AgentLoad(
            agent=self.name,
            running=self.admission.running,
            waiting=self.admission.waiting,
            waiting_chats=self.admission.waiting_chats(),
            capacity=self.admission.capacity,
            engine=engine_load,
            admitted=stats.admitted,
            waited=stats.waited,
            max_wait_s=stats.max_wait_s,
            fallback_turns=self.fallback_turns,
        )


def gate(agent: RunsTurns, spec: BackpressureSpec, fallback: ChatEngine | None) -> GatedAgent:
    """`agent` behind its admission queue as its config says. Without `max_concurrent_turns`
    the capacity is the engine's own (vLLM's batch size, a llama.cpp pool's size)."""
    capacity = spec.max_concurrent_turns
    if capacity is None:
        reported = getattr(agent.engine, "capacity", None)
        capacity = reported if isinstance(reported, int) and reported > 0 else DEFAULT_CAPACITY
    return GatedAgent(agent, capacity, fallback=fallback, fallback_after_s=spec.fallback_after_s)


def combine_loads(agent: str, loads: Iterable[AgentLoad]) -> AgentLoad:
    """One agent's pool as one load: counts add up; the engine load is the busiest reported
    (workers usually share one engine deployment, so adding those up would double count)."""
    total = AgentLoad(agent=agent, workers=0)
    for load in loads:
        busiest = total.engine
        if load.engine is not None and (busiest is None or _busier(load.engine, busiest)):
            busiest = load.engine
        total = replace(
            total,
            running=total.running + load.running,
            waiting=total.waiting + load.waiting,
            waiting_chats=total.waiting_chats + load.waiting_chats,
            capacity=total.capacity + load.capacity,
            engine=busiest,
            admitted=total.admitted + load.admitted,
            waited=total.waited + load.waited,
            max_wait_s=max(total.max_wait_s, load.max_wait_s),
            fallback_turns=total.fallback_turns + load.fallback_turns,
            workers=total.workers + load.workers,
        )
    return total


def _busier(a: EngineLoad, b: EngineLoad) -> bool:
    return (a.waiting, a.running) > (b.waiting, b.running)
