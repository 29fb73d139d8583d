"""The platform `whatsray test` runs stories against by default: everything in this process, no
Ray (what the actors run, minus the actors; the shape of the in-process test rigs).

Emulator (ASGI) -> signed webhook -> inbox (an embedded Valkey on a free port) -> session hosts
-> agents -> store (a DuckDB file in a temporary folder) -> outbox -> emulator; the scheduler
without timers (a `wait` step moves the clock and reconciles the jobs); the admin and jobs API
over ASGI, which the runner reads like it reads a running platform.

One clock for all of them (store, hosts, outbox, agents, scheduler, admin API and emulator):
`SystemClock`, wall time plus an offset, started at `START` (a Monday 09:00 UTC) so that stories
see the same dates on every run; `wait: 25h` moves it, and with it the 24-hour window rules of
the emulator and the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
from fastapi import FastAPI
from starlette.applications import Starlette

from whatsray.admin import create_admin_router
from whatsray.admin.jobs_api import create_jobs_router
from whatsray.agents import build_runtime
from whatsray.agents.config import AgentsConfig
from whatsray.inbox import Inbox, partition_for
from whatsray.inbox.embedded import EmbeddedValkey
from whatsray.outbox import Outbox
from whatsray.outbox.templates import TemplatesConfig
from whatsray.pipeline.host import SessionHostCore
from whatsray.pipeline.ingest import InboxSink
from whatsray.scheduling import SchedulerCore
from whatsray.session import SessionConfig
from whatsray.store import Store
from whatsray.stories.target import HttpTarget
from whatsray.tools import PlatformToolServices
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID, EmulatorConfig, create_emulator_app
from whatsray.whatsapp.emulator.clock import SystemClock
from whatsray.whatsapp.emulator.config import StatusDelays
from whatsray.whatsapp.emulator.core import Emulator
from whatsray.whatsapp.events import ChatKey
from whatsray.whatsapp.graph_client import GraphClient
from whatsray.whatsapp.webhook_receiver import create_webhook_receiver

__all__ = ["OPERATOR", "START", "InProcessPlatform", "in_process_platform"]

SECRET, TOKEN, ADMIN = "stories-secret", "stories-token", "stories-admin"
VERIFY = "stories-verify"
PNID = DEFAULT_PHONE_NUMBER_ID
PARTITIONS = 2
OPERATOR = "15550000000"  # the human the support agent hands chats to
START = datetime(2030, 1, 7, 9, 0, tzinfo=UTC).timestamp()


class InProcessPlatform:
    """The running pieces, and the target the runner uses (`target`)."""

    def __init__(
        self,
        *,
        clock: SystemClock,
        inbox: Inbox,
        store: Store,
        emulator: Emulator,
        outbox: Outbox,
        hosts: list[SessionHostCore],
        scheduler: SchedulerCore,
        control: httpx.AsyncClient,
        admin: httpx.AsyncClient,
        emulator_app: Starlette,
        admin_app: FastAPI,
    ) -> None:
        self.emulator_app = emulator_app  # served on a port, they are a `--url` target
        self.admin_app = admin_app
        self.clock = clock
        self.inbox = inbox
        self.store = store
        self.emulator = emulator
        self.outbox = outbox
        self.hosts = hosts
        self.scheduler = scheduler
        self.target = HttpTarget(
            emulator=control,
            admin=admin,
            phone_number_id=PNID,
            settle=self.quiet,
            now=clock.now,
            advance=self.advance,
        )

    async def busy(self) -> list[int]:
        """What is still going on (all zero: quiet): inbox entries not acked or not read, status
        webhooks being relayed, turns being committed, sessions with work, sends in flight,
        webhooks the emulator has still to deliver."""
        return [
            *[await self.inbox.unfinished(p) for p in range(PARTITIONS)],
            *[h.statuses.pending + h.committer.batcher.busy for h in self.hosts],
            *[h.registry.stats().busy for h in self.hosts],
            self.outbox.in_flight(),
            self.emulator.delivery.pending,
        ]

    async def quiet(self, user: str = "", within_s: float = 60.0, polls: int = 2) -> None:
        """Until `busy()` is all zero at `polls` polls in a row (never a fixed sleep): each step
        of a message's path starts the next before it ends, so nothing is left to send then."""
        deadline = time.monotonic() + within_s
        calm = 0
        while calm < polls:
            counts = await self.busy()
            calm = calm + 1 if not any(counts) else 0
            if time.monotonic() > deadline:
                raise TimeoutError(f"the platform is not quiet within {within_s:.0f} s: {counts}")
            if calm < polls:
                await asyncio.sleep(0.02)

    async def advance(self, seconds: float) -> None:
        """Simulated time: the clock moves, and the scheduler makes the runs now due (their
        turns run before the runner's next quiet check returns)."""
        self.clock.advance(seconds)
        await self.scheduler.reconcile_all()


@contextlib.asynccontextmanager
async def in_process_platform(
    config: AgentsConfig,
    *,
    templates: TemplatesConfig | None = None,
    data_dir: Path | None = None,
    start: float = START,
) -> AsyncIterator[InProcessPlatform]:
    """Start the platform for `config`; everything is stopped and deleted on exit."""
    with contextlib.ExitStack() as stack:
        folder = data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory("-stories")))
        async with (
            EmbeddedValkey(folder / "valkey", appendonly=False) as valkey,
            Inbox.from_url(valkey.url, partitions=PARTITIONS) as inbox,
            _platform(config, inbox, folder, templates, start) as platform,
        ):
            yield platform


@contextlib.asynccontextmanager
async def _platform(
    config: AgentsConfig,
    inbox: Inbox,
    folder: Path,
    templates: TemplatesConfig | None,
    start: float,
) -> AsyncIterator[InProcessPlatform]:
    clock = SystemClock()
    if start > clock.now():
        clock.advance(start - clock.now())
    async with Store(folder / "whatsray.duckdb", now=clock.now) as store:
        ingest = create_webhook_receiver(
            app_secret=SECRET, verify_token=VERIFY, on_events=InboxSink(inbox)
        )
        to_bot = httpx.AsyncClient(transport=httpx.ASGITransport(ingest), base_url="http://bot")
        emulator_app = create_emulator_app(
            EmulatorConfig(
                app_secret=SECRET,
                access_token=TOKEN,
                webhook_url="http://bot/webhook",
                # `sent` only: read receipts a second later would keep the platform busy.
                status_delays=StatusDelays(sent=0.0, delivered=None, read=None),
            ),
            http=to_bot,
            clock=clock,
        )
        emulator: Emulator = emulator_app.state.emulator
        async with (
            to_bot,
            emulator,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(emulator_app), base_url="http://emulator"
            ) as control,
        ):

            async def window(chat: str) -> float | None:
                record = await store.get_chat(chat)
                return record.last_inbound_at if record else None

            graph = GraphClient(control, TOKEN, PNID, base_url="http://emulator")
            outbox = Outbox(
                PNID, graph, store, window_lookup=window, templates=templates, now=clock.now
            )
            scheduler = SchedulerCore(store, inbox, now=clock.now, timers=False)
            services = PlatformToolServices(
                store,
                lambda _: outbox,
                operator_number=OPERATOR,
                jobs=scheduler,
                opt_in=store,
            )
            runtime = await build_runtime(config, services=services, now=clock.now)
            hosts: list[SessionHostCore] = []

            async def elsewhere(chat: ChatKey) -> None:
                hosts[partition_for(chat, PARTITIONS)].invalidate(chat)

            for partition in range(PARTITIONS):
                hosts.append(
                    SessionHostCore(
                        partition,
                        inbox=inbox,
                        store=store,
                        router=runtime.router,
                        agents=runtime,
                        outbox_for=lambda _: outbox,
                        agents_config=config,
                        session_config=SessionConfig(),
                        consumer_options={"block_ms": 50},
                        now=clock.now,
                        operator_number=OPERATOR,
                        partitions=PARTITIONS,
                        invalidate_elsewhere=elsewhere,
                        phone_number_ids=[PNID],
                    )
                )

            async def set_handoff(chat: str, on: bool) -> None:
                key = ChatKey.parse(chat)
                await hosts[partition_for(key, PARTITIONS)].set_handoff(key, on)

            app = FastAPI()
            app.include_router(
                create_admin_router(
                    admin_token=ADMIN,
                    store=store,
                    outbox_for=lambda _: outbox,
                    phone_number_ids=[PNID],
                    handoff=set_handoff,
                    now=clock.now,
                )
            )
            app.include_router(create_jobs_router(admin_token=ADMIN, jobs=scheduler))
            await scheduler.start()
            for host in hosts:
                await host.start()
            try:
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app),
                    base_url="http://admin",
                    headers={"Authorization": f"Bearer {ADMIN}"},
                ) as admin:
                    yield InProcessPlatform(
                        clock=clock,
                        inbox=inbox,
                        store=store,
                        emulator=emulator,
                        outbox=outbox,
                        hosts=hosts,
                        scheduler=scheduler,
                        control=control,
                        admin=admin,
                        emulator_app=emulator_app,
                        admin_app=app,
                    )
            finally:
                for host in hosts:
                    await host.close()
                await scheduler.close()
                await outbox.close()
                await runtime.close()
