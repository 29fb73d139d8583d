"""The Outbox actor: one per business number, the single owner of that number's rate limits."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import httpx

from actors.proxy import ActorProxy, Forwarder
from whatsray.outbox import Outbox, load_templates
from whatsray.outbox.ledger import OutboundLedger
from whatsray.store import Store
from whatsray.whatsapp.graph_client import GraphClient

log = logging.getLogger(__name__)

OUTBOX_METHODS = ("dispatch", "submit", "apply_status", "mark_read", "replay_dead_letter")


class OutboxActor:
    def __init__(
        self,
        phone_number_id: str,
        store: Any,
        *,
        access_token: str,
        graph_api_base_url: str,
        graph_api_version: str,
        throughput_mps: float,
        templates_file: str | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))
        # The Store actor serves both the outbound ledger and the chats' 24 h windows.
        ledger = cast(Store, ActorProxy(store))

        async def window(chat: str) -> float | None:
            record = await ledger.get_chat(chat)
            return None if record is None else record.last_inbound_at

        graph = GraphClient(
            self._http,
            access_token,
            phone_number_id,
            base_url=graph_api_base_url,
            api_version=graph_api_version,
        )
        self._outbox = Outbox(
            phone_number_id,
            graph,
            cast(OutboundLedger, ledger),
            throughput_mps=throughput_mps,
            window_lookup=window,
            # Invalid templates fail the actor's start with the loader's message (as at load).
            templates=load_templates(templates_file),
        )
        self._forward = Forwarder(self._outbox, OUTBOX_METHODS)
        # After a crash: send what the last incarnation recorded but never finished.
        self._resumed = asyncio.get_running_loop().create_task(self._outbox.resume_pending())

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await self._forward.call(method, *args, **kwargs)

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._outbox.stats.as_dict()
        return stats
