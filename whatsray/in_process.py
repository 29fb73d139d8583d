"""The platform in one process, no Ray (what the actors run, minus the actors): what
`whatsray test` runs stories against by default, and what the in-process test rigs
(tests/integration/test_pipeline_in_process.py, test_handoff_in_process.py) build on.

Emulator (ASGI) -> signed webhook -> inbox -> session hosts -> agents -> store (a DuckDB file)
-> outbox -> emulator; the scheduler without timers (a `wait` step moves the clock and reconciles
the jobs); the admin and jobs API over ASGI, which the runner reads like it reads a running
platform. `wired_platform` builds it on a given inbox (a test's Valkey); `in_process_platform`
on an embedded Valkey in a temporary folder (`whatsray test`).

One clock for all of them (store, hosts, outbox, agents, scheduler, admin API and emulator):
`SystemClock`, wall time plus an offset. `whatsray test` starts it at `START` (a Monday 09:00
UTC) so that stories see the same dates on every run; `wait: 25h` moves it, and with it the
24-hour window rules of the emulator and the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx
from fastapi import FastAPI
from starlette.applications import Starlette

from whatsray.admin import create_admin_router
from whatsray.admin.jobs_api import create_jobs_router
from whatsray.agents import build_runtime
from whatsray.agents.build import AgentRuntime, EngineFactory
from whatsray.agents.config import AgentsConfig
from whatsray.inbox import Inbox, partition_for
from whatsray.inbox.embedded import EmbeddedValkey
from whatsray.llm import build_engine
from whatsray.outbox import Outbox
from whatsray.outbox.templates import TemplatesConfig
from whatsray.outbox.window import WindowLookup
from whatsray.pipeline.host import SessionHostCore
from whatsray.pipeline.ingest import InboxSink
from whatsray.scheduling import SchedulerCore
from whatsray.session import SessionConfig
from whatsray.store import Store
from whatsray.tools import BUILTIN_TOOLS, PlatformToolServices, ToolRegistry
from whatsray.whatsapp.emulator import DEFAULT_PHONE_NUMBER_ID, EmulatorConfig, create_emulator_app
from whatsray.whatsapp.emulator.clock import Clock, SystemClock
from whatsray.whatsapp.emulator.config import StatusDelays
from whatsray.whatsapp.emulator.core import Emulator
from whatsray.whatsapp.events import ChatKey
from whatsray.whatsapp.graph_client import GraphClient
from whatsray.whatsapp.webhook_receiver import EventSink, create_webhook_receiver

__all__ = [
    "OPERATOR",
    "START",
    "EmulatorLink",
    "InProcessPlatform",
    "emulator_link",
    "in_process_platform",
    "inbound_window",
    "wired_platform",
]

SECRET, TOKEN, ADMIN = "stories-secret", "stories-token", "stories-admin"
VERIFY = "stories-verify"
PNID = DEFAULT_PHONE_NUMBER_ID
PARTITIONS = 2  # of the embedded Valkey's inbox
OPERATOR = "15550000000"  # the human the support agent hands chats to
START = datetime(2030, 1, 7, 9, 0, tzinfo=UTC).timestamp()
# `sent` only: read receipts a second later would keep the platform busy.
SENT_ONLY = StatusDelays(sent=0.0, delivered=None, read=None)


@dataclass
class EmulatorLink:
    """The emulator over ASGI, wired to a webhook receiver over ASGI."""

    app: Starlette  # the emulator's app (served on a port, it is a `--url` target)
    emulator: Emulator
    control: httpx.AsyncClient  # the emulator's Graph and control API
    to_bot: httpx.AsyncClient  # the webhook receiver (what the emulator posts to)


@contextlib.asynccontextmanager
async def emulator_link(
    config: EmulatorConfig, on_events: EventSink, *, clock: Clock | None = None
) -> AsyncIterator[EmulatorLink]:
    """The emulator of `config`, its signed webhooks going to a webhook receiver (same secret)
    that hands their events to `on_events`; `config.webhook_url` is set to that receiver."""
    receiver = create_webhook_receiver(
        app_secret=config.app_secret, verify_token=VERIFY, on_events=on_events
    )
    to_bot = httpx.AsyncClient(transport=httpx.ASGITransport(receiver), base_url="http://bot")
    config = config.model_copy(update={"webhook_url": "http://bot/webhook"})
    app = create_emulator_app(config, http=to_bot, clock=clock)
    emulator: Emulator = app.state.emulator
    async with (
        to_bot,
        emulator,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://emulator"
        ) as control,
    ):
        yield EmulatorLink(app, emulator, control, to_bot)


def inbound_window(store: Store) -> WindowLookup:
    """The outbox's window lookup: the chat's last inbound time in `store`."""

    async def window(chat: str) -> float | None:
        record = await store.get_chat(chat)
        return record.last_inbound_at if record else None

    return window


class InProcessPlatform:
    """The running pieces (`whatsray.stories.target.in_process_target` makes the runner's
    target of them)."""

    def __init__(
        self,
        *,
        clock: SystemClock,
        inbox: Inbox,
        store: Store,
        link: EmulatorLink,
        outbox: Outbox,
        runtime: AgentRuntime,
        hosts: list[SessionHostCore],
        make_host: Callable[[int], SessionHostCore],
        scheduler: SchedulerCore,
        admin: httpx.AsyncClient,
        admin_app: FastAPI,
    ) -> None:
        self.emulator_app = link.app  # served on a port, they are a `--url` target
        self.admin_app = admin_app
        self.clock = clock
        self.inbox = inbox
        self.store = store
        self.emulator = link.emulator
        self.control = link.control
        self.to_bot = link.to_bot
        self.outbox = outbox
        self.runtime = runtime
        self.hosts = hosts  # one a partition; a test may replace one (`make_host`)
        self.make_host = make_host  # a new host for a partition, as Ray restarts one
        self.scheduler = scheduler
        self.admin = admin  # sends the admin token

    async def busy(self) -> list[int]:
        """What is still going on (all zero: quiet): inbox entries not acked or not read, status
        webhooks being relayed, turns being committed, sessions with work, sends in flight,
        webhooks the emulator has still to deliver."""
        return [
            *[await self.inbox.unfinished(p) for p in range(self.inbox.partitions)],
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
    """Start the platform for `config` on an embedded Valkey, its clock at `start`; everything
    is stopped and deleted on exit."""
    clock = SystemClock()
    if start > clock.now():
        clock.advance(start - clock.now())
    with contextlib.ExitStack() as stack:
        folder = data_dir or Path(stack.enter_context(tempfile.TemporaryDirectory("-stories")))
        async with (
            EmbeddedValkey(folder / "valkey", appendonly=False) as valkey,
            Inbox.from_url(valkey.url, partitions=PARTITIONS) as inbox,
            wired_platform(
                config, inbox, folder / "whatsray.duckdb", clock=clock, templates=templates
            ) as platform,
        ):
            yield platform


@contextlib.asynccontextmanager
async def wired_platform(
    config: AgentsConfig,
    inbox: Inbox,
    db: Path,
    *,
    clock: SystemClock | None = None,
    templates: TemplatesConfig | None = None,
    status_delays: StatusDelays = SENT_ONLY,
    window_failure_mode: Literal["sync", "async"] = "sync",
    engine_factory: EngineFactory = build_engine,
    tools: ToolRegistry = BUILTIN_TOOLS,
    sweep_every_s: float = 60.0,
    handoff_release_after_s: float | None = None,
) -> AsyncIterator[InProcessPlatform]:
    """The platform for `config` on `inbox` (one session host a partition) and a store in `db`;
    `clock` (default: wall time) for all its parts. Hosts, scheduler, outbox and agents are
    closed on exit; the inbox is the caller's."""
    clock = clock or SystemClock()
    emulator_config = EmulatorConfig(
        app_secret=SECRET,
        access_token=TOKEN,
        status_delays=status_delays,
        window_failure_mode=window_failure_mode,
    )
    async with (
        Store(db, now=clock.now) as store,
        emulator_link(emulator_config, InboxSink(inbox), clock=clock) as link,
    ):
        graph = GraphClient(link.control, TOKEN, PNID, base_url="http://emulator")
        outbox = Outbox(
            PNID,
            graph,
            store,
            window_lookup=inbound_window(store),
            templates=templates,
            now=clock.now,
        )
        scheduler = SchedulerCore(store, inbox, now=clock.now, timers=False)
        services = PlatformToolServices(
            store, lambda _: outbox, operator_number=OPERATOR, jobs=scheduler, opt_in=store
        )
        runtime = await build_runtime(
            config, services=services, tools=tools, engine_factory=engine_factory, now=clock.now
        )
        hosts: list[SessionHostCore] = []
        partitions = inbox.partitions

        async def elsewhere(chat: ChatKey) -> None:
            hosts[partition_for(chat, partitions)].invalidate(chat)

        def make_host(partition: int) -> SessionHostCore:
            return SessionHostCore(
                partition,
                inbox=inbox,
                store=store,
                router=runtime.router,
                agents=runtime,
                outbox_for=lambda _: outbox,
                agents_config=config,
                session_config=SessionConfig(),
                sweep_every_s=sweep_every_s,
                consumer_options={"block_ms": 50},
                now=clock.now,
                operator_number=OPERATOR,
                handoff_release_after_s=handoff_release_after_s,
                partitions=partitions,
                invalidate_elsewhere=elsewhere,
                phone_number_ids=[PNID],
            )

        async def set_handoff(chat: str, on: bool) -> None:
            key = ChatKey.parse(chat)
            await hosts[partition_for(key, partitions)].set_handoff(key, on)

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
        hosts.extend(make_host(p) for p in range(partitions))
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
                    link=link,
                    outbox=outbox,
                    runtime=runtime,
                    hosts=hosts,
                    make_host=make_host,
                    scheduler=scheduler,
                    admin=admin,
                    admin_app=app,
                )
        finally:
            for host in hosts:
                await host.close()
            await scheduler.close()
            await outbox.close()
            await runtime.close()
