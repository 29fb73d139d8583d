"""A turn as a stream of journal events and then its result, for running an agent in another
process than the session that owns the journal.

The agent worker actor iterates `stream_turn(agent, request)` and yields each item to the caller
(a Ray streaming generator); the caller (`AgentPool` in the SessionHost) applies each
`JournalEvent` to the session's `ToolCallJournal` as it arrives and returns the final
`AgentTurnResult`. So when the session cancels a turn in the middle of a tool call, its own journal
already knows that call was started, and gives it the result `cancelled`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from whatsray.agents.agent import AgentTurnRequest, AgentTurnResult
from whatsray.session.turns import ToolCallJournal

__all__ = ["JournalEvent", "RecordingJournal", "RunsTurn", "stream_turn"]


class RunsTurn(Protocol):
    """An `Agent`, or anything wrapping one (a gate that queues turns, a fallback engine)."""

    async def run(
        self, request: AgentTurnRequest, journal: ToolCallJournal | None = None
    ) -> AgentTurnResult: ...


@dataclass(frozen=True, slots=True)
class JournalEvent:
    """One `started` or `finished` call on a journal, as a value that crosses processes."""

    kind: Literal["started", "finished"]
    call_id: str
    name: str = ""
    arguments: str = "{}"
    result: str = ""
    error: bool = False

    def apply(self, journal: ToolCallJournal) -> None:
        if self.kind == "started":
            journal.started(self.call_id, self.name, self.arguments)
        else:
            journal.finished(self.call_id, self.result, error=self.error)


class RecordingJournal(ToolCallJournal):
    """A journal that also reports each call to `emit` (as a `JournalEvent`)."""

    __slots__ = ("_emit",)

    def __init__(self, emit: Callable[[JournalEvent], None]) -> None:
        super().__init__()
        self._emit = emit

    def started(self, call_id: str, name: str, arguments: str = "{}") -> None:
        super().started(call_id, name, arguments)
        self._emit(JournalEvent("started", call_id, name=name, arguments=arguments))

    def finished(self, call_id: str, result: str, *, error: bool = False) -> None:
        super().finished(call_id, result, error=error)
        self._emit(JournalEvent("finished", call_id, result=result, error=error))


async def stream_turn(
    agent: RunsTurn, request: AgentTurnRequest
) -> AsyncIterator[JournalEvent | AgentTurnResult]:
    """Run the turn, yielding its journal events as they happen, then its result (last).

    Closing or cancelling the iteration cancels the turn (the caller gave up on it)."""
    events: asyncio.Queue[JournalEvent] = asyncio.Queue()
    journal = RecordingJournal(events.put_nowait)
    turn = asyncio.ensure_future(agent.run(request, journal))
    try:
        while not turn.done():
            waiting = asyncio.ensure_future(events.get())
            try:
                await asyncio.wait((turn, waiting), return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not waiting.done():
                    waiting.cancel()
            if waiting.done() and not waiting.cancelled():
                yield waiting.result()
        while not events.empty():
            yield events.get_nowait()
        yield turn.result()
    finally:
        if not turn.done():
            turn.cancel()
            await asyncio.wait((turn,))
        if turn.done() and not turn.cancelled():
            turn.exception()  # retrieved: an error already raised above is not logged twice
