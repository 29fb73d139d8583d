"""The admin API's deployment for integration tests: the admin router in a FastAPI app over a real
DuckDB `Store`, a real `Outbox` and the in-process emulator, whose signed webhooks (inbound
messages, statuses) reach the store and the outbox through the real webhook receiver. One clock
(the emulator's) for all, so a test moves time past the 24-hour window for everything at once.

Shared by tests/integration/test_admin_api.py (through `httpx.ASGITransport`) and the MCP tests
(the same app served on loopback). `numbers` serves several business numbers, each with its own
`Outbox` (`Admin.outboxes`; `Admin.outbox` is the first's). `GET /api/status` reports the store,
the outboxes and, given an
`inbox` (a real Valkey), its partitions; with an inbox the inbound account
(`GET /api/inbound/unresolved`) and quarantine replays are mounted too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from tests.support.quiet import until_calm
from whatsray.admin import create_admin_router
from whatsray.admin.status import StatusSources, collect_status
from whatsray.admin.status_models import StatusOut
from whatsray.in_process import emulator_link, inbound_window
from whatsray.inbox import Inbox
from whatsray.outbox import OutboundRecord, Outbox, RetryPolicy
from whatsray.outbox.snapshot import OutboxStatus
from whatsray.store import Store
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID, EmulatorConfig, StatusDelays
from whatsray.whatsapp.emulator.clock import SystemClock
from whatsray.whatsapp.emulator.core import Emulator
from whatsray.whatsapp.events import Event, MessageEvent, StatusEvent
from whatsray.whatsapp.graph_client import GraphClient

SECRET, GRAPH_TOKEN, ADMIN_TOKEN = "admin-app-secret", "admin-graph-token", "admin-test-token"
PNID = DEFAULT_PHONE_NUMBER_ID
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DAY = 24 * 3600


@dataclass
class Admin:
    api: httpx.AsyncClient  # authenticated
    anon: httpx.AsyncClient  # no Authorization header
    app: FastAPI
    store: Store
    outbox: Outbox
    emulator: Emulator
    control: httpx.AsyncClient  # the emulator's control API
    clock: SystemClock
    inbox: Inbox | None = None
    outboxes: dict[str, Outbox] | None = None  # by business number; None: only `outbox`

    async def user_says(self, user: str, text: str = "hi", **extra: Any) -> str:
        """A user writes (opening the window); returns once the store has the message."""
        sender = {"user_id": user} if user.startswith("US.") else {"from": user}
        body = {**sender, "message": {"type": "text", "text": text}, **extra}
        response = await self.control.post("/emulator/inbound", json=body)
        assert response.status_code == 200, response.text
        wamid: str = response.json()["wamid"]
        assert await self.store.get_message(wamid) is not None  # the webhook's 200 = stored
        return wamid

    async def quiet(self, within_s: float = 30.0) -> None:
        """Until the outbox and the emulator's webhooks have nothing left to do, twice in a row."""

        async def busy() -> int:
            outboxes = (self.outboxes or {PNID: self.outbox}).values()
            return sum(o.in_flight() for o in outboxes) + self.emulator.delivery.pending

        await until_calm(busy, lambda count: count == 0, within_s=within_s)

    async def settled(self, outbound_id: str, within_s: float = 10.0) -> OutboundRecord:
        """The record once the outbox is done with it (no longer pending)."""
        deadline = time.monotonic() + within_s
        while True:
            record = await self.store.get_outbound(outbound_id)
            if record is not None and record.status != "pending":
                return record
            if time.monotonic() > deadline:
                raise AssertionError(f"{outbound_id} still pending: {record}")
            await asyncio.sleep(0.02)

    def accepted_texts(self, to: str) -> list[str]:
        """What the emulator accepted for this user (phone in any format, or BSUID)."""
        return [
            r.body["text"]["body"]
            for r in self.emulator.outbound(to=to)
            if r.outcome == "accepted" and r.body.get("type") == "text"
        ]

    async def send(self, to: str, text: str, **extra: Any) -> httpx.Response:
        return await self.api.post("/api/send-message", json={"to": to, "text": text, **extra})


@asynccontextmanager
async def admin_stack(
    tmp_path: Path, inbox: Inbox | None = None, numbers: Sequence[str] = (PNID,)
) -> AsyncIterator[Admin]:
    """The whole deployment, torn down on exit (statuses still in flight go nowhere)."""
    clock = SystemClock()
    outboxes: dict[str, Outbox] = {}

    async def on_events(events: list[Event]) -> None:
        for event in events:
            if isinstance(event, MessageEvent):
                await store.record_inbound(event)
            elif isinstance(event, StatusEvent) and event.phone_number_id in outboxes:
                await outboxes[event.phone_number_id].apply_status(event)

    config = EmulatorConfig(
        app_secret=SECRET,
        access_token=GRAPH_TOKEN,
        phone_numbers=tuple(numbers),
        status_delays=StatusDelays(sent=0.0, delivered=0.01, read=0.02),
    )
    async with (
        Store(tmp_path / "admin.duckdb", now=clock.now) as store,
        emulator_link(config, on_events, clock=clock) as link,
    ):
        emulator, control = link.emulator, link.control
        for number in numbers:
            outboxes[number] = Outbox(
                number,
                GraphClient(control, GRAPH_TOKEN, number, base_url="http://emulator"),
                store,
                retry=RetryPolicy(max_attempts=2, base_s=0.01, max_delay_s=0.02),
                now=clock.now,
                window_lookup=inbound_window(store),
                ambiguous_grace_s=0.2,
                grace_poll_s=0.02,
            )
        outbox = outboxes[numbers[0]]

        def outbox_status(number: str) -> Callable[[], Awaitable[OutboxStatus]]:
            async def status() -> OutboxStatus:
                return outboxes[number].status()

            return status

        sources = StatusSources(
            partitions=inbox.partitions if inbox is not None else 0,
            backlog=inbox.backlog if inbox is not None else None,
            persistence=inbox.persistence if inbox is not None else None,
            outboxes={number: outbox_status(number) for number in numbers},
            store=store.status_counts,
            now=clock.now,
        )

        async def status() -> StatusOut:
            return await collect_status(sources)

        app = FastAPI()
        app.include_router(
            create_admin_router(
                admin_token=ADMIN_TOKEN,
                store=store,
                outbox_for=outboxes.__getitem__,
                phone_number_ids=list(numbers),
                status=status,
                inbox=inbox,
                now=clock.now,
            )
        )
        transport = httpx.ASGITransport(app)
        async with (
            contextlib.AsyncExitStack() as opened,
            httpx.AsyncClient(transport=transport, base_url="http://admin", headers=AUTH) as api,
            httpx.AsyncClient(transport=transport, base_url="http://admin") as anon,
        ):
            for each in outboxes.values():
                await opened.enter_async_context(each)
            try:
                yield Admin(
                    api, anon, app, store, outbox, emulator, control, clock, inbox,
                    dict(outboxes),
                )  # fmt: skip
            finally:
                outboxes.clear()  # statuses still in flight go nowhere
                await emulator.settle(max_wait=5)
