"""`GET /api/status`: one snapshot of a running platform, gathered from all its parts at once.

Every part is asked once, all at the same time, each within `timeout_s`. A part that fails or
does not answer in time shows as null and is named in `unavailable`, and the rest still comes
back: a status page is most needed when something is broken. The parts are plain callables
(`StatusSources`), so the same code runs over actor clients on Ray (the ingress wires them) and
over the real objects in tests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from whatsray.admin.status_models import (
    AgentStatusOut,
    InboxPersistenceOut,
    NextRunOut,
    OutboxStatusOut,
    PartitionStatusOut,
    StatusOut,
)

if TYPE_CHECKING:
    from whatsray.agents.backpressure import AgentLoad
    from whatsray.inbox.persistence import RedisPersistence
    from whatsray.inbox.values import PartitionBacklog
    from whatsray.outbox.snapshot import OutboxStatus
    from whatsray.scheduling.models import NextRun
    from whatsray.session.registry import SessionCounts
    from whatsray.store.records import StatusCounts

__all__ = ["DEFAULT_TIMEOUT_S", "StatusSources", "collect_status"]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class StatusSources:
    """Where each part of the snapshot comes from. A part left out (no session hosts in a test,
    no scheduler) is null without being called unavailable."""

    partitions: int
    backlog: Callable[[int], Awaitable[PartitionBacklog]] | None = None  # `Inbox.backlog`
    sessions: Mapping[int, Callable[[], Awaitable[SessionCounts]]] = field(default_factory=dict)
    agents: Mapping[str, Callable[[], Awaitable[AgentLoad]]] = field(default_factory=dict)
    outboxes: Mapping[str, Callable[[], Awaitable[OutboxStatus]]] = field(default_factory=dict)
    store: Callable[[], Awaitable[StatusCounts]] | None = None
    next_runs: Callable[[], Awaitable[Sequence[NextRun]]] | None = None
    persistence: Callable[[], Awaitable[RedisPersistence]] | None = None  # `Inbox.persistence`
    timeout_s: float = DEFAULT_TIMEOUT_S
    now: Callable[[], float] = time.time


class _Asker:
    """Asks each part within the timeout; remembers which did not answer."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.failed: set[str] = set()

    async def __call__(self, name: str, call: Callable[[], Awaitable[T]] | None) -> T | None:
        if call is None:
            return None
        try:
            return await asyncio.wait_for(call(), self.timeout_s)
        except Exception as exc:  # a status page reports a broken part, it does not fail on it
            why = "no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__
            log.warning("status: %s unavailable (%s)", name, why)
            self.failed.add(name)
            return None


async def collect_status(sources: StatusSources) -> StatusOut:
    """The snapshot; never raises for a part that is down."""
    ask = _Asker(sources.timeout_s)
    partitions = range(sources.partitions)
    agents, outboxes = list(sources.agents), list(sources.outboxes)

    def backlog(p: int) -> Callable[[], Awaitable[PartitionBacklog]] | None:
        inbox = sources.backlog
        return None if inbox is None else lambda: inbox(p)

    parts = asyncio.gather(
        asyncio.gather(*(ask(f"inbox {p}", backlog(p)) for p in partitions)),
        asyncio.gather(*(ask(f"session_host {p}", sources.sessions.get(p)) for p in partitions)),
        asyncio.gather(*(ask(f"agent {name}", sources.agents[name]) for name in agents)),
        asyncio.gather(*(ask(f"outbox {pnid}", sources.outboxes[pnid]) for pnid in outboxes)),
        ask("store", sources.store),
        ask("scheduler", sources.next_runs),
    )
    (backlogs, sessions, loads, queues, counts, runs), persistence = await asyncio.gather(
        parts, ask("inbox persistence", sources.persistence)
    )
    names = [
        *(f"inbox {p}" for p in partitions),
        *(f"session_host {p}" for p in partitions),
        *(f"agent {name}" for name in agents),
        *(f"outbox {pnid}" for pnid in outboxes),
        "store",
        "scheduler",
        "inbox persistence",
    ]
    return StatusOut(
        taken_at=sources.now(),
        partitions=[
            _partition(p, b, s) for p, b, s in zip(partitions, backlogs, sessions, strict=True)
        ],
        agents=[_agent(name, load) for name, load in zip(agents, loads, strict=True)],
        outboxes=[_outbox(pnid, q) for pnid, q in zip(outboxes, queues, strict=True)],
        dead_letters=None if counts is None else counts.dead_letters,
        handoffs=None if counts is None else counts.handoffs,
        next_runs=None if runs is None else [NextRunOut(**r.model_dump()) for r in runs],
        inbox_persistence=_persistence(persistence),
        unavailable=[name for name in names if name in ask.failed],
    )


def _partition(
    partition: int, backlog: PartitionBacklog | None, sessions: SessionCounts | None
) -> PartitionStatusOut:
    return PartitionStatusOut(
        partition=partition,
        lag=None if backlog is None else backlog.lag,
        pending=None if backlog is None else backlog.pending,
        oldest_pending_s=None if backlog is None else round(backlog.oldest_pending_s, 3),
        sessions_active=None if sessions is None else sessions.active,
        sessions_busy=None if sessions is None else sessions.busy,
    )


def _agent(name: str, load: AgentLoad | None) -> AgentStatusOut:
    if load is None:
        return AgentStatusOut(agent=name)
    engine = load.engine
    return AgentStatusOut(
        agent=name,
        workers=load.workers,
        running=load.running,
        waiting=load.waiting,
        capacity=load.capacity,
        saturated=load.saturated,
        engine_running=None if engine is None else engine.running,
        engine_waiting=None if engine is None else engine.waiting,
    )


def _outbox(phone_number_id: str, status: OutboxStatus | None) -> OutboxStatusOut:
    if status is None:
        return OutboxStatusOut(phone_number_id=phone_number_id)
    oldest = status.oldest_pending_s
    return OutboxStatusOut(
        phone_number_id=phone_number_id,
        queue_depth=status.queue_depth,
        oldest_pending_s=None if oldest is None else round(oldest, 3),
        throughput_mps=status.throughput_mps,
        tokens_available=round(status.tokens_available, 2),
        pair_buckets=status.pair_buckets,
        waiting_sends=status.waiting_sends,
    )


def _persistence(persistence: RedisPersistence | None) -> InboxPersistenceOut | None:
    if persistence is None:
        return None
    return InboxPersistenceOut(
        aof_enabled=persistence.aof_enabled,
        rdb_save=persistence.rdb_save,
        warning=persistence.warning,
    )
