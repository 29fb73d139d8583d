"""Routing where the turn runs: the explicit rules and the trained stage are pure, so the session
host applies them itself and calls the Router actor only when its classifier (an LLM) must decide
(docs/hot-path.md, "Hops").
"""

from __future__ import annotations

from whatsray.agents.config import AgentsConfig
from whatsray.agents.router import (
    RouteDecision,
    Router,
    RouteRequest,
    count_route,
    with_confidence,
)
from whatsray.pipeline.ports import RouterPort

__all__ = ["RulesFirstRouter"]


class RulesFirstRouter:
    """A `RouterPort`: the rules and the trained stage here, then the remote classifier (when one
    is configured and there is a choice to make), else the default agent, exactly as
    `Router.route` decides (the Router actor runs the same rules and model again: microseconds)."""

    def __init__(self, config: AgentsConfig, classifier: RouterPort) -> None:
        self._local = Router(config)  # no engine: rules, trained stage, the fallback
        has_choice = config.classifier_engine() is not None and len(config.names) > 1
        self._classifier = classifier if has_choice else None
        self.remote_calls = 0

    async def route(self, request: RouteRequest) -> RouteDecision:
        decision, guess = self._local.local(request)
        if decision is None and self._classifier is not None:
            self.remote_calls += 1
            return await self._classifier.route(request)
        if decision is None:  # the fallback: no I/O
            decision = with_confidence(await self._local.classify(request), guess)
        count_route(decision)  # a remote decision is counted by the Router actor
        return decision
