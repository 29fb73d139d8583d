"""One turn: route the inputs to an agent, run it, and say what it produced.

The session calls this as its `run_turn` hook. It never raises for an engine failure (the agent
already turned that into an apology, reported as a FAILED outcome); anything else that raises is
the session's to handle (it commits the configured apology). A turn whose tools handed the chat to
a person ends `HANDOFF`: the session sets the chat's flag and runs no more turns for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from whatsray.agents.agent import AgentOutcome, AgentTurnRequest
from whatsray.agents.router import RouteRequest
from whatsray.pipeline.ports import AgentsPort, OutboxPort, RouterPort
from whatsray.session.turns import (
    ToolCallJournal,
    TurnOutcome,
    TurnRequest,
    TurnResult,
    TurnUsage,
)

log = logging.getLogger(__name__)


class TurnRunner:
    def __init__(
        self,
        router: RouterPort,
        agents: AgentsPort,
        outbox_for: Callable[[str], OutboxPort],
        *,
        now: Callable[[], float],
    ) -> None:
        self._router = router
        self._agents = agents
        self._outbox_for = outbox_for
        self._now = now

    async def __call__(self, request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        await self._acknowledge_to_user(request)
        last_at = request.history[-1].at if request.history else None
        decision = await self._router.route(
            RouteRequest.from_events(
                str(request.chat),
                request.inputs,
                current_agent=request.agent,
                handoff=request.handoff,
                idle_s=None if last_at is None else max(0.0, self._now() - last_at),
            )
        )
        if decision.agent is None:  # handoff: a human answers, the bot stays silent
            return TurnResult(agent=request.agent, outcome=TurnOutcome.HANDOFF)
        result = await self._agents.run(
            decision.agent,
            AgentTurnRequest.from_events(
                request.turn_id,
                str(request.chat),
                request.inputs,
                request.history,
                earlier_tool_calls=request.interrupted_tool_calls,
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
        )

    async def _acknowledge_to_user(self, request: TurnRequest) -> None:
        """Blue ticks and the typing indicator on the newest input (best effort)."""
        newest = request.inputs[-1].message_id
        if newest is None:
            return
        try:
            await self._outbox_for(request.chat.phone_number_id).mark_read(
                newest, typing_indicator=True
            )
        except Exception:  # a missing read receipt must never cost the user the answer
            log.warning("mark-as-read failed for %s", newest, exc_info=True)
