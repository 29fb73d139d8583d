"""The client of the agent workers: `AgentsPort` over each agent's pool of worker actors.

A turn of an agent with tools crosses to a worker as a Ray streaming generator (`turn`, with
`num_returns="streaming"`): the worker yields each tool call's `started` / `finished` as it
happens and the `AgentTurnResult` last; the pool applies the events to the session's journal. An
agent without tools has nothing to journal: its turn is one plain call (`run`), a third cheaper
for the session host. When the session cancels the turn (an interrupt, a timeout), the pool
cancels the remote call, which cancels the agent's task in the worker.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import ray

from whatsray.agents import AgentTurnRequest, AgentTurnResult, JournalEvent
from whatsray.agents.backpressure import AgentLoad, combine_loads
from whatsray.calls import calls
from whatsray.pipeline.ports import AgentsPort
from whatsray.session.turns import ToolCallJournal

AGENT = "agent"


class AgentPool:
    """`AgentsPort`: round robin across each agent's workers."""

    def __init__(
        self, workers: Mapping[str, Sequence[Any]], with_tools: frozenset[str] | None = None
    ) -> None:
        self._workers = {name: list(handles) for name, handles in workers.items()}
        self._with_tools = set(workers) if with_tools is None else with_tools
        self._next: dict[str, Iterator[Any]] = {
            name: itertools.cycle(handles) for name, handles in self._workers.items()
        }

    async def run(
        self, agent: str, request: AgentTurnRequest, journal: ToolCallJournal
    ) -> AgentTurnResult:
        worker = next(self._next[agent])
        if agent not in self._with_tools:
            calls.count(AGENT, "run")
            ref = worker.run.remote(request)
            try:
                result: AgentTurnResult = await ref
            except asyncio.CancelledError:
                ray.cancel(ref)
                raise
            return result
        calls.count(AGENT, "turn")
        stream = worker.turn.options(num_returns="streaming").remote(request)
        streamed: AgentTurnResult | None = None
        try:
            async for ref in stream:
                item = await ref
                if isinstance(item, JournalEvent):
                    item.apply(journal)
                elif isinstance(item, AgentTurnResult):
                    streamed = item
        except asyncio.CancelledError:
            ray.cancel(stream)  # the turn stops in the worker too (its tool call is cancelled)
            raise
        if streamed is None:
            raise RuntimeError(f"agent {agent!r} ended its turn {request.turn_id} without a result")
        return streamed

    async def load(self, agent: str) -> AgentLoad:
        """The agent's inference load over all its workers."""
        workers = self._workers[agent]
        calls.count(AGENT, "load", len(workers))
        loads = await asyncio.gather(*(w.load.remote() for w in workers))
        return combine_loads(agent, loads)

    def __reduce__(self) -> tuple[Any, ...]:
        return (AgentPool, (self._workers, self._with_tools))


def _check(workers: Mapping[str, Sequence[Any]]) -> None:
    """Never called: mypy holds the pool to `AgentsPort`."""
    pool: AgentsPort = AgentPool(workers)
    del pool
