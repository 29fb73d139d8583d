"""One turn: route the inputs to an agent, run it, and say what it produced.

The session calls this as its `run_turn` hook. It never raises for an engine failure (the agent
already turned that into an apology, reported as a FAILED outcome); anything else that raises is
the session's to handle (it commits the configured apology). A turn whose tools handed the chat to
a person ends `HANDOFF`: the session sets the chat's flag and runs no more turns for it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from whatsray import metrics
from whatsray.agents.agent import AgentOutcome, AgentTurnRequest
from whatsray.agents.config import AgentsConfig
from whatsray.agents.router import RouteRequest
from whatsray.pipeline.ports import AgentsPort, RouterPort
from whatsray.pipeline.relays import ReadReceipts
from whatsray.pipeline.waiting import WaitingNotice
from whatsray.session.scheduled import opens_window
from whatsray.session.turns import (
    ToolCallJournal,
    TurnOutcome,
    TurnRequest,
    TurnResult,
    TurnUsage,
)
from whatsray.whatsapp.events import ChatKey, MessageEvent

# Sends a text to a chat under an outbound id derived from `key` (recorded, then dispatched).
SendText = Callable[[ChatKey, str, str], Awaitable[None]]


class TurnRunner:
    def __init__(
        self,
        router: RouterPort,
        agents: AgentsPort,
        reads: ReadReceipts,
        *,
        agents_config: AgentsConfig,
        open_window: Callable[[ChatKey, float], Awaitable[None]],
        send_text: SendText,
        now: Callable[[], float],
        waiting: WaitingNotice | None = None,
    ) -> None:
        self._router = router
        self._agents = agents
        self._reads = reads
        self._config = agents_config
        self._open_window = open_window
        self._send_text = send_text
        self._now = now
        self.waiting = waiting or WaitingNotice()

    async def __call__(self, request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        newest = request.inputs[-1].message_id
        if newest is not None:  # blue ticks and typing, beside the turn: never waited for
            self._reads.send(request.chat.phone_number_id, newest)
        window = _TurnWindow(self._open_window, request, self._now())
        last_at = request.history[-1].at if request.history else None
        routing = time.monotonic()
        decision = await self._router.route(
            RouteRequest.from_events(
                str(request.chat),
                request.inputs,
                current_agent=request.agent,
                handoff=request.handoff,
                idle_s=None if last_at is None else max(0.0, self._now() - last_at),
            )
        )
        metrics.turn_stage_seconds.observe(time.monotonic() - routing, stage="route")
        if decision.agent is None:  # handoff: a human answers, the bot stays silent
            await window.open()
            return TurnResult(agent=request.agent, outcome=TurnOutcome.HANDOFF)
        agent = decision.agent
        if self._config.agent(agent).tools:
            await window.open()  # its tools may send to the user before the commit
        async with self._while_waiting(request, agent, window):
            result = await self._agents.run(
                agent,
                AgentTurnRequest.from_events(
                    request.turn_id,
                    str(request.chat),
                    request.inputs,
                    request.history,
                    earlier_tool_calls=request.interrupted_tool_calls,
                    last_inbound_at=request.last_inbound_at,
                ),
                journal,
            )
        if result.handoff:  # wins over a failed closing reply: the chat is a person's now
            outcome = TurnOutcome.HANDOFF
        elif result.outcome is AgentOutcome.ENGINE_ERROR:
            outcome = TurnOutcome.FAILED
        else:
            outcome = TurnOutcome.OK
        return TurnResult(
            reply_parts=result.reply_parts,
            agent=result.agent,
            tool_calls=result.tool_calls,
            outcome=outcome,
            usage=TurnUsage(
                engine=result.engine,
                model=result.model,
                prompt_tokens=result.usage.prompt_tokens,
                completion_tokens=result.usage.completion_tokens,
                latency_s=result.latency_ms / 1000,
            ),
            error=result.error,
            agent_outcome=result.outcome.value,
        )

    def _while_waiting(
        self, request: TurnRequest, agent: str, window: _TurnWindow
    ) -> AbstractAsyncContextManager[None]:
        """Typing stays on during a long turn; "one moment" once if inference is saturated."""
        spec = self._config.agent(agent).backpressure
        newest = request.inputs[-1].message_id
        number = request.chat.phone_number_id

        async def refresh_typing() -> None:
            assert newest is not None
            await self._reads.refresh(number, newest)

        async def saturated() -> bool:
            return (await self._agents.load(agent)).saturated

        async def send_notice() -> None:
            # One id per turn: a retried turn (same inputs, same id) never says it twice.
            await window.open()
            await self._send_text(request.chat, f"{request.turn_id}:wait", spec.notice_text)

        return self.waiting.watch(
            refresh_typing=refresh_typing if newest is not None else None,
            saturated=saturated,
            send_notice=send_notice,
            notice_after_s=spec.notice_after_s,
        )


class _TurnWindow:
    """The 24-hour window the turn's inputs open. They are stored with the turn, at the commit;
    whatever the turn sends before that (its tools, the "one moment" notice) needs the window
    open in the store first. Written at most once, and only for such a send: a plain turn costs
    no extra store write. A scheduled input is not the user writing: it opens nothing."""

    def __init__(
        self,
        open_window: Callable[[ChatKey, float], Awaitable[None]],
        request: TurnRequest,
        now: float,
    ) -> None:
        written = [_sent_at(e, now) for e in request.inputs if opens_window(e)]
        self._open_window = open_window
        self._chat = request.chat
        self._at = max(written) if written else None

    async def open(self) -> None:
        at, self._at = self._at, None
        if at is not None:
            await self._open_window(self._chat, at)


def _sent_at(event: MessageEvent, default: float) -> float:
    return event.timestamp.timestamp() if event.timestamp is not None else default
