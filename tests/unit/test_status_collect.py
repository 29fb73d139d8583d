"""`collect_status`: every part asked at once, each within the timeout; a part that fails or
hangs is unavailable and the rest of the snapshot still comes back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from whatsray.admin.status import StatusSources, collect_status
from whatsray.agents.backpressure import AgentLoad
from whatsray.inbox import InboxUnavailable, PartitionBacklog, RedisPersistence
from whatsray.llm import EngineLoad
from whatsray.outbox.snapshot import OutboxStatus
from whatsray.scheduling.models import NextRun
from whatsray.session.registry import SessionCounts
from whatsray.store.records import StatusCounts

T = TypeVar("T")
PNID = "106540352242922"


def answers(value: T) -> Callable[[], Awaitable[T]]:
    async def call() -> T:
        return value

    return call


async def backlog(partition: int) -> PartitionBacklog:
    return PartitionBacklog(partition, lag=partition + 1, pending=2, oldest_pending_s=1.23456)


def sources(**overrides: object) -> StatusSources:
    parts: dict[str, object] = {
        "partitions": 2,
        "backlog": backlog,
        "sessions": {0: answers(SessionCounts(5, 1)), 1: answers(SessionCounts(0, 0))},
        "agents": {
            "faq": answers(
                AgentLoad(
                    "faq",
                    running=1,
                    waiting=2,
                    capacity=4,
                    workers=2,
                    engine=EngineLoad(running=3, waiting=1),
                )
            )
        },
        "outboxes": {PNID: answers(OutboxStatus(PNID, 3, 4.56789, 80.0, 12.345, 7, 1))},
        "store": answers(StatusCounts(dead_letters=2, handoffs=1)),
        "next_runs": answers(
            [NextRun(job_id="j1", name="digest", kind="system", chat=None, at=1_750_000_600.0)]
        ),
        "timeout_s": 0.5,
        "now": lambda: 1_750_000_000.0,
    }
    parts.update(overrides)
    return StatusSources(**parts)  # type: ignore[arg-type]


async def test_every_part_in_one_snapshot() -> None:
    status = await collect_status(sources())

    assert status.taken_at == 1_750_000_000.0
    assert [p.model_dump() for p in status.partitions] == [
        {"partition": 0, "lag": 1, "pending": 2, "oldest_pending_s": 1.235,
         "sessions_active": 5, "sessions_busy": 1},
        {"partition": 1, "lag": 2, "pending": 2, "oldest_pending_s": 1.235,
         "sessions_active": 0, "sessions_busy": 0},
    ]  # fmt: skip
    [agent] = status.agents
    assert (agent.agent, agent.workers, agent.running, agent.waiting, agent.capacity) == (
        "faq", 2, 1, 2, 4,
    )  # fmt: skip
    assert (agent.saturated, agent.engine_running, agent.engine_waiting) == (True, 3, 1)
    [outbox] = status.outboxes
    assert outbox.model_dump() == {
        "phone_number_id": PNID, "queue_depth": 3, "oldest_pending_s": 4.568,
        "throughput_mps": 80.0, "tokens_available": 12.35, "pair_buckets": 7, "waiting_sends": 1,
    }  # fmt: skip
    assert (status.dead_letters, status.handoffs) == (2, 1)
    assert status.next_runs is not None and [r.name for r in status.next_runs] == ["digest"]
    assert status.unavailable == []


async def test_a_part_that_fails_or_hangs_is_unavailable_and_the_rest_still_answers() -> None:
    never = asyncio.Event()
    cancelled: list[str] = []

    async def hangs() -> OutboxStatus:
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.append("outbox")  # the timeout stops the call, it does not leak
            raise
        raise AssertionError("unreachable")

    async def fails() -> SessionCounts:
        raise ConnectionError("actor died")

    async def inbox_down(partition: int) -> PartitionBacklog:
        if partition == 1:
            raise TimeoutError("redis")
        return await backlog(partition)

    status = await collect_status(
        sources(
            backlog=inbox_down,
            sessions={0: answers(SessionCounts(5, 1)), 1: fails},
            outboxes={PNID: hangs},
            store=fails,
            timeout_s=0.2,
        )
    )

    assert status.unavailable == ["inbox 1", "session_host 1", f"outbox {PNID}", "store"]
    assert cancelled == ["outbox"]
    first, second = status.partitions
    assert (first.lag, first.sessions_active) == (1, 5)
    assert (second.lag, second.pending, second.oldest_pending_s) == (None, None, None)
    assert (second.sessions_active, second.sessions_busy) == (None, None)
    [outbox] = status.outboxes
    assert outbox.phone_number_id == PNID and outbox.queue_depth is None
    assert (status.dead_letters, status.handoffs) == (None, None)
    assert status.agents[0].running == 1 and status.next_runs is not None


async def test_parts_are_asked_at_the_same_time() -> None:
    # Each part answers only once all have been asked: asked one after another, the first would
    # wait for the others until its timeout.
    asked = 0
    everyone = asyncio.Event()

    def part(value: T) -> Callable[[], Awaitable[T]]:
        async def call() -> T:
            nonlocal asked
            asked += 1
            if asked == 6:
                everyone.set()
            await everyone.wait()
            return value

        return call

    async def part_backlog(partition: int) -> PartitionBacklog:
        return await part(PartitionBacklog(partition, 0, 0, 0.0))()

    status = await collect_status(
        sources(
            partitions=1,
            backlog=part_backlog,
            sessions={0: part(SessionCounts(0, 0))},
            agents={"faq": part(AgentLoad("faq"))},
            outboxes={PNID: part(OutboxStatus(PNID, 0, None, 80.0, 80.0, 0, 0))},
            store=part(StatusCounts(0, 0)),
            next_runs=part([]),
            timeout_s=2.0,
        )
    )
    assert status.unavailable == []


async def test_parts_the_app_does_not_have_are_null_without_being_unavailable() -> None:
    status = await collect_status(
        StatusSources(partitions=1, backlog=backlog, timeout_s=0.5, now=lambda: 0.0)
    )
    assert status.unavailable == []
    assert status.partitions[0].lag == 1 and status.partitions[0].sessions_active is None
    assert (status.agents, status.outboxes, status.next_runs) == ([], [], None)


async def test_the_inbox_persistence_is_shown_and_unavailable_when_redis_does_not_answer() -> None:
    volatile = RedisPersistence(aof_enabled=False, rdb_save="")
    shown = await collect_status(sources(persistence=answers(volatile)))
    assert shown.inbox_persistence is not None
    assert (shown.inbox_persistence.aof_enabled, shown.inbox_persistence.rdb_save) == (False, "")
    assert shown.inbox_persistence.warning == volatile.warning is not None

    async def down() -> RedisPersistence:
        raise InboxUnavailable("inbox unavailable (persistence check): refused")

    missing = await collect_status(sources(persistence=down))
    assert missing.inbox_persistence is None
    assert missing.unavailable == ["inbox persistence"]
