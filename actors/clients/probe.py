# Ray handles are untyped: a remote result is Any, and the return annotation is the contract.
# mypy: disable-error-code="no-any-return"
"""Readiness probes: `ping` of any actor that has one (store, scheduler, session hosts)."""

from __future__ import annotations

from typing import Any

from actors.clients._base import Client
from whatsray.calls import calls


class ProbeClient(Client):
    def __init__(self, handle: Any, target: str) -> None:
        super().__init__(handle)
        self._target = target

    async def ping(self) -> bool:
        calls.count(self._target, "ping")
        return await self._handle.ping.remote()
