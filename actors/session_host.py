"""The SessionHost actor: one per inbox partition, hosting that partition's chat sessions.

Ray restarts it when it dies (`max_restarts=-1`); the constructor then rebuilds everything from
the stream and the store: it first reads its own pending entries (delivered, never acked), then
reclaims stale ones, then new ones (`whatsray.pipeline.consumer`). It reaches the store, the
router, the agents and the outboxes through typed clients (`actors.clients`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import ray

from actors.agents import load_config
from actors.clients import (
    AgentPool,
    HostStoreClient,
    PeerHostClient,
    PipelineOutboxClient,
    RouterClient,
)
from actors.metrics import start_actor_metrics
from whatsray.calls import calls
from whatsray.inbox import Inbox, partition_for
from whatsray.metrics.refresh import report_forever
from whatsray.observability.logs import LogSetup, configure_logging
from whatsray.pipeline.host import SessionHostCore
from whatsray.session import SessionConfig
from whatsray.session.registry import SessionCounts
from whatsray.whatsapp.events import ChatKey


class SessionHost:
    def __init__(
        self,
        partition: int,
        *,
        redis_url: str,
        partitions: int,
        store: Any,
        router: Any,
        agent_workers: Mapping[str, Sequence[Any]],
        outboxes: Mapping[str, Any],
        agents_file: str,
        engine_override: str | None,
        idle_timeout_s: float,
        retry_deadline_s: float = 600.0,
        operator_number: str | None = None,
        handoff_release_after_s: float | None = None,
        peer_names: Sequence[str],
        namespace: str,
        logs: LogSetup | None = None,
        metrics_every_s: float = 5.0,
    ) -> None:
        """`peer_names`: every host's actor name, by partition (in `namespace`): a handoff
        change made here reaches the host that holds the chat (`invalidate`)."""
        start_actor_metrics("session_host")
        configure_logging(logs)  # first: what the constructor logs is formatted and redacted
        self._peer_names = tuple(peer_names)
        self._namespace = namespace
        self._inbox = Inbox.from_url(redis_url, partitions=partitions)
        self._partitions = partitions
        outbox_clients = {pnid: PipelineOutboxClient(h) for pnid, h in outboxes.items()}
        agents_config = load_config(agents_file, engine_override)
        with_tools = frozenset(a.name for a in agents_config.agents if a.tools)
        self._core = SessionHostCore(
            partition,
            inbox=self._inbox,
            store=HostStoreClient(store),
            router=RouterClient(router),
            agents=AgentPool(agent_workers, with_tools),
            outbox_for=outbox_clients.__getitem__,
            agents_config=agents_config,
            phone_number_ids=tuple(outboxes),
            session_config=SessionConfig(
                idle_timeout_s=idle_timeout_s, retry_deadline_s=retry_deadline_s
            ),
            operator_number=operator_number,
            handoff_release_after_s=handoff_release_after_s or None,
            partitions=partitions,
            invalidate_elsewhere=self._invalidate_elsewhere,
        )
        loop = asyncio.get_running_loop()
        self._started = loop.create_task(self._core.start())
        self._reporting = loop.create_task(
            report_forever(self._core.report_metrics, metrics_every_s)
        )

    async def ping(self) -> bool:
        await asyncio.shield(self._started)  # a caller giving up must not cancel the start
        return True

    async def drain(self) -> None:
        """A new release takes this partition over (actors/rollout.py): finish and stop."""
        self._reporting.cancel()
        await asyncio.shield(self._started)
        await self._core.drain()

    async def stats(self) -> dict[str, Any]:
        return self._core.stats()

    async def status(self) -> SessionCounts:
        """Its sessions now (`GET /api/status`)."""
        return self._core.registry.counts()

    async def call_counts(self) -> dict[str, int]:
        return calls.snapshot()

    async def set_handoff(self, chat: str, on: bool) -> None:
        """Hand `chat` (a canonical chat key of this host's partition) to a person, or back."""
        await asyncio.shield(self._started)
        key = ChatKey.parse(chat)
        if not self._core.owns(key):
            raise ValueError(f"chat {chat} is not in partition {self._core.partition}")
        await self._core.set_handoff(key, on)

    async def invalidate(self, chat: str) -> None:
        """The store changed `chat` (another host released it): reload before its next turn."""
        self._core.invalidate(chat)

    async def _invalidate_elsewhere(self, chat: ChatKey) -> None:
        name = self._peer_names[partition_for(chat, self._partitions)]
        other = ray.get_actor(name, namespace=self._namespace)
        await PeerHostClient(other).invalidate(str(chat))
