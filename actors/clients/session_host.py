# Ray handles are untyped: a remote result is Any, and the return annotation is the contract.
# mypy: disable-error-code="no-any-return"
"""Clients of the SessionHost actors: the ingress's (handoff, stats) and a host's peers'."""

from __future__ import annotations

from typing import Any

from actors.clients._base import Client
from whatsray.admin.ports import HandoffControl
from whatsray.calls import calls
from whatsray.session.registry import SessionCounts

SESSION_HOST = "session_host"


class SessionHostClient(Client):
    """The ingress's view of one host: the admin API's handoff switch, the host's stats and
    its sessions for `GET /api/status`."""

    async def set_handoff(self, chat: str, on: bool) -> None:
        calls.count(SESSION_HOST, "set_handoff")
        return await self._handle.set_handoff.remote(chat, on)

    async def stats(self) -> dict[str, Any]:
        calls.count(SESSION_HOST, "stats")
        return await self._handle.stats.remote()

    async def status(self) -> SessionCounts:
        calls.count(SESSION_HOST, "status")
        return await self._handle.status.remote()


class PeerHostClient(Client):
    """Another host, as a host sees it: told to drop a chat's cached state."""

    async def invalidate(self, chat: str) -> None:
        calls.count(SESSION_HOST, "invalidate")
        return await self._handle.invalidate.remote(chat)


def _check(handle: Any) -> None:
    """Never called: mypy holds the handoff switch to the admin API's `HandoffControl`."""
    handoff: HandoffControl = SessionHostClient(handle).set_handoff
    del handoff
