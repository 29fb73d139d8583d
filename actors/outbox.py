"""The Outbox actor: one per business number, the single owner of that number's rate limits.

It serves the methods below and no others: what the outbox clients (`actors.clients.outbox`)
call, `in_flight` (how the tests wait for quiet), and the counters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from httpx_aiohttp import AiohttpTransport

from actors.clients import LedgerClient
from actors.metrics import start_actor_metrics
from whatsray.calls import calls
from whatsray.metrics.refresh import report_forever
from whatsray.observability.logs import LogSetup, configure_logging
from whatsray.outbox import Outbox, load_templates
from whatsray.outbox.ledger import OutboundItem, OutboundRecord
from whatsray.outbox.snapshot import OutboxStatus
from whatsray.retries import Backoff, GaveUp, retry_until
from whatsray.whatsapp.events import StatusEvent
from whatsray.whatsapp.graph_client import GraphClient

log = logging.getLogger(__name__)

MAX_REQUESTS = 64  # Graph requests in flight at once, and the HTTP pool's size
SWEEP_EVERY_S = 30.0  # how often the ledger is swept for sends nobody took up
RESUME_BACKOFF = Backoff(initial_s=0.2, max_s=2.0)  # resuming while the store restarts


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
        logs: LogSetup | None = None,
        metrics_every_s: float = 5.0,
    ) -> None:
        start_actor_metrics("outbox")
        configure_logging(logs)  # first: what the constructor logs is formatted and redacted
        # As many connections as the outbox makes requests at once (Outbox(max_requests=...)).
        # httpx's API over aiohttp's connections: httpx's own pool cost 2.4 ms of CPU per
        # request here, aiohttp's 0.4 (docs/hot-path.md).
        limits = httpx.Limits(max_connections=MAX_REQUESTS, max_keepalive_connections=MAX_REQUESTS)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=5.0),
            transport=AiohttpTransport(limits=limits),
        )
        # The Store actor serves both the outbound ledger and the chats' 24 h windows.
        ledger = LedgerClient(store)
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
            ledger,
            throughput_mps=throughput_mps,
            window_lookup=ledger.window,
            max_requests=MAX_REQUESTS,
            # Invalid templates fail the actor's start with the loader's message (as at load).
            templates=load_templates(templates_file),
        )
        # After a crash: send what the last incarnation recorded but never finished; then, now
        # and then, what was recorded and never handed over (docs/outbox.md, "Sweeps").
        self._resumed = asyncio.get_running_loop().create_task(self._resume())
        self._sweeping = asyncio.get_running_loop().create_task(self._sweep_forever())
        self._reporting = asyncio.get_running_loop().create_task(
            report_forever(self._outbox.report_metrics, metrics_every_s)
        )

    async def _resume(self) -> None:
        """Take up what the last incarnation left, waiting out a store that is down (it may
        have died with this actor). Never raises: on a permanent failure the sweeps take over."""
        try:
            await retry_until(
                self._outbox.resume_pending,
                what="resume_pending",
                backoff=RESUME_BACKOFF,
                deadline=None,
                now=time.monotonic,
                sleep=asyncio.sleep,
            )
        except GaveUp:
            log.exception("resuming pending sends failed: the periodic sweep takes them up")

    async def _sweep_forever(self) -> None:
        await asyncio.shield(self._resumed)
        while True:
            await asyncio.sleep(SWEEP_EVERY_S)
            try:
                await self._outbox.sweep_pending(older_than_s=SWEEP_EVERY_S)
            except Exception:  # the store is down: the next sweep tries again
                log.warning("sweeping pending sends failed", exc_info=True)

    async def drain(self) -> None:
        """A new release's outbox takes this number over (actors/rollout.py): the sends on
        the wire finish and are written, the rest stays pending for it."""
        for task in (self._sweeping, self._reporting, self._resumed):
            task.cancel()
        await self._outbox.drain()

    async def sweep_pending(self, older_than_s: float = 30.0) -> int:
        return await self._outbox.sweep_pending(older_than_s)

    async def dispatch(
        self,
        items: Sequence[OutboundItem],
        fresh: Sequence[bool] | None = None,
        windows: Mapping[str, float | None] | None = None,
    ) -> None:
        # After the resume has taken up the last incarnation's sends: a chat's earlier reply
        # (left pending by the crash) keeps its place before the later ones in their lane.
        await asyncio.shield(self._resumed)
        return await self._outbox.dispatch(items, fresh, windows)

    async def apply_statuses(self, events: Sequence[StatusEvent]) -> list[str | None]:
        return await self._outbox.apply_statuses(events)

    async def mark_reads(self, message_ids: Sequence[str], typing_indicator: bool = True) -> None:
        return await self._outbox.mark_reads(message_ids, typing_indicator)

    async def replay_dead_letter(self, dead_letter_id: str) -> OutboundRecord:
        return await self._outbox.replay_dead_letter(dead_letter_id)

    async def status(self) -> OutboxStatus:
        """Its queue and rate limits now, from memory (`GET /api/status`)."""
        return self._outbox.status()

    async def in_flight(self) -> int:
        """Sends and writes still running here, the restart's resume included: 0 when quiet."""
        resuming = 0 if self._resumed.done() else 1
        return self._outbox.in_flight() + resuming

    async def call_counts(self) -> dict[str, int]:
        return calls.snapshot()
