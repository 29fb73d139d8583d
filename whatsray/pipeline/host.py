"""A SessionHost without Ray: one inbox partition, its consumer loop and its session registry.

The `SessionHost` Ray actor is a thin shell around this (one per partition, named, restarted by
Ray); tests and single-process runs use it directly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from whatsray.agents.config import AgentsConfig
from whatsray.inbox import Inbox
from whatsray.pipeline.consumer import PartitionConsumer
from whatsray.pipeline.hooks import build_session_hooks
from whatsray.pipeline.ports import AgentsPort, OutboxPort, RouterPort, StorePort
from whatsray.pipeline.waiting import WaitingNotice
from whatsray.session import SessionConfig, SessionRegistry

log = logging.getLogger(__name__)


class SessionHostCore:
    def __init__(
        self,
        partition: int,
        *,
        inbox: Inbox,
        store: StorePort,
        router: RouterPort,
        agents: AgentsPort,
        outbox_for: Callable[[str], OutboxPort],
        agents_config: AgentsConfig,
        session_config: SessionConfig | None = None,
        sweep_every_s: float = 60.0,
        consumer_options: dict[str, Any] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.partition = partition
        self._inbox = inbox
        self._sweep_every_s = sweep_every_s
        config = session_config or SessionConfig()

        async def ack(tokens: tuple[str, ...]) -> None:
            await inbox.ack(partition, tokens)

        self.waiting = WaitingNotice()
        hooks = build_session_hooks(
            store=store,
            router=router,
            agents=agents,
            outbox_for=outbox_for,
            ack=ack,
            agents_config=agents_config,
            session_config=config,
            now=now,
            waiting=self.waiting,
        )
        self.registry = SessionRegistry(hooks, config, now=now)
        self._consumer_options = consumer_options or {}
        self.consumer: PartitionConsumer | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.consumer = PartitionConsumer(
            self._inbox,
            self.partition,
            self.registry.deliver,
            unacked=lambda: self.registry.stats().unacked,
            **self._consumer_options,
        )
        self._tasks = [
            asyncio.create_task(self.consumer.run(), name=f"consume-{self.partition}"),
            asyncio.create_task(self._sweep_forever(), name=f"sweep-{self.partition}"),
        ]

    async def close(self, grace_s: float = 5.0) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # Bounded: a client library that swallows a cancellation must not hang a shutdown.
            _, stuck = await asyncio.wait(self._tasks, timeout=grace_s)
            for task in stuck:
                log.warning(
                    "partition %d: %s did not stop in time", self.partition, task.get_name()
                )
        await self.registry.close()

    def stats(self) -> dict[str, Any]:
        consumer = self.consumer
        return {
            "partition": self.partition,
            "delivered": consumer.delivered if consumer else 0,
            "skipped": consumer.skipped if consumer else 0,
            **dataclasses.asdict(self.registry.stats()),
            **dataclasses.asdict(self.waiting.stats),
        }

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_every_s)
            passivated = await self.registry.sweep()
            if passivated:
                log.info("partition %d: passivated %d idle session(s)", self.partition, passivated)
