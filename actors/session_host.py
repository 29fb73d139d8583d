"""The SessionHost actor: one per inbox partition, hosting that partition's chat sessions.

Ray restarts it when it dies (`max_restarts=-1`); the constructor then rebuilds everything from
the stream and the store: it first reads its own pending entries (delivered, never acked), then
reclaims stale ones, then new ones (`whatsray.pipeline.consumer`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, cast

from actors.agents import AgentPool, load_config
from actors.proxy import ActorProxy
from whatsray.inbox import Inbox
from whatsray.pipeline.host import SessionHostCore
from whatsray.pipeline.ports import OutboxPort, RouterPort, StorePort
from whatsray.session import SessionConfig


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
    ) -> None:
        self._inbox = Inbox.from_url(redis_url, partitions=partitions)
        outbox_proxies = {pnid: cast(OutboxPort, ActorProxy(h)) for pnid, h in outboxes.items()}
        self._core = SessionHostCore(
            partition,
            inbox=self._inbox,
            store=cast(StorePort, ActorProxy(store)),
            router=cast(RouterPort, ActorProxy(router)),
            agents=AgentPool(agent_workers),
            outbox_for=outbox_proxies.__getitem__,
            agents_config=load_config(agents_file, engine_override),
            session_config=SessionConfig(idle_timeout_s=idle_timeout_s),
        )
        self._started = asyncio.get_running_loop().create_task(self._core.start())

    async def ping(self) -> bool:
        await asyncio.shield(self._started)  # a caller giving up must not cancel the start
        return True

    async def stats(self) -> dict[str, Any]:
        return self._core.stats()
