# Ray handles are untyped: a remote result is Any, and the return annotation is the contract.
# mypy: disable-error-code="no-any-return"
"""The client of the Router actor: `RouterPort`, for the session hosts."""

from __future__ import annotations

from typing import Any

from actors.clients._base import Client
from whatsray.agents.router import RouteDecision, RouteRequest
from whatsray.calls import calls
from whatsray.pipeline.ports import RouterPort

ROUTER = "router"


class RouterClient(Client):
    async def route(self, request: RouteRequest) -> RouteDecision:
        calls.count(ROUTER, "route")
        return await self._handle.route.remote(request)


def _check(handle: Any) -> None:
    """Never called: mypy holds the client to `RouterPort`."""
    router: RouterPort = RouterClient(handle)
    del router
