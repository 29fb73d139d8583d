"""One chat, one turn at a time, in order; chats concurrently; statuses in order, never turns."""

from __future__ import annotations

import asyncio

from tests.unit.session_harness import (
    FakeBackend,
    FakeClock,
    chat_key,
    entry,
    eventually,
    idle,
    message,
    policy,
    status,
    texts,
)
from whatsray.session import PolicyMode, ToolCallJournal, TurnRequest, TurnResult
from whatsray.whatsapp.events import ChatKey, StatusValue

CHATS = 100
MESSAGES = 10


async def test_100_chats_x_10_interleaved_messages_each_chat_in_order_chats_concurrent() -> None:
    clock = FakeClock()
    # Every chat's first turn waits until all 100 first turns are running at once: this only
    # completes if chats run concurrently (one after another, the barrier would never fill).
    barrier = asyncio.Barrier(CHATS)
    started: set[ChatKey] = set()
    running: dict[ChatKey, int] = {}
    overlaps: list[ChatKey] = []

    async def agent(request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        running[request.chat] = running.get(request.chat, 0) + 1
        if running[request.chat] > 1:
            overlaps.append(request.chat)  # two turns of one chat at the same time
        try:
            if request.chat not in started:
                started.add(request.chat)
                await barrier.wait()
            await asyncio.sleep(0)  # let others interleave
            return TurnResult(reply_parts=["ok"])
        finally:
            running[request.chat] -= 1

    backend = FakeBackend(behaviour=agent, policy=policy(PolicyMode.ENQUEUE))
    registry = backend.registry(clock)
    chats = [chat_key(f"1555{c:07d}") for c in range(CHATS)]
    for n in range(MESSAGES):
        for c, chat in enumerate(chats):
            await registry.deliver(entry(message(f"m-{c}-{n}", f"{n}", chat=chat)))

    await idle(registry)  # with a guard against a hang, not a timing

    assert overlaps == []
    for chat in chats:
        assert [texts(t) for t in backend.turns_of(chat)] == [[str(n)] for n in range(MESSAGES)]
    assert len(backend.commits) == CHATS * MESSAGES
    assert sorted(backend.acks) == sorted(
        f"tok-m-{c}-{n}" for c in range(CHATS) for n in range(MESSAGES)
    )
    stats = registry.stats()
    assert (stats.sessions, stats.busy, stats.unacked, stats.turns) == (CHATS, 0, 0, 1000)


async def test_a_slow_chat_never_blocks_another() -> None:
    clock, gate = FakeClock(), asyncio.Event()
    slow_chat, fast_chat = chat_key("15550000001"), chat_key("15550000002")

    async def agent(request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        if request.chat == slow_chat:
            await gate.wait()
        return TurnResult(reply_parts=["ok"])

    backend = FakeBackend(behaviour=agent, policy=policy(PolicyMode.ENQUEUE))
    registry = backend.registry(clock)
    await registry.deliver(entry(message("s1", chat=slow_chat)))
    await registry.deliver(entry(message("s2", chat=slow_chat)))
    for n in range(3):
        await registry.deliver(entry(message(f"f{n}", chat=fast_chat)))

    await eventually(lambda: len(backend.turns_of(fast_chat)) == 3 and len(backend.acks) == 3)
    assert len(backend.turns_of(slow_chat)) == 1  # still in its first turn
    assert registry.stats().busy == 1

    gate.set()
    await idle(registry)
    assert [t.input_ids for t in backend.turns_of(slow_chat)] == [("s1",), ("s2",)]


async def test_statuses_are_applied_in_order_and_acked_without_a_turn() -> None:
    clock, backend = FakeClock(), FakeBackend()  # coalesce: the message waits for quiet
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m1", "hi")))
    await registry.deliver(entry(status("w1", StatusValue.SENT)))
    await registry.deliver(entry(status("w1", StatusValue.DELIVERED)))
    await registry.deliver(entry(status("w1", StatusValue.READ)))
    await eventually(lambda: len(backend.acks) == 3)

    # Applied at once, while the message still waits for its quiet period.
    assert [s.idempotency_key for s in backend.statuses] == ["w1:sent", "w1:delivered", "w1:read"]
    assert backend.acks == ["tok-w1:sent", "tok-w1:delivered", "tok-w1:read"]
    assert backend.turns == []
    for kind, _ in backend.timeline:
        assert kind in {"load", "status", "ack"}

    await clock.advance(1.5)
    await idle(registry)
    assert [t.input_ids for t in backend.turns] == [("m1",)]


async def test_a_status_arriving_during_a_turn_does_not_wait_for_it() -> None:
    clock, gate = FakeClock(), asyncio.Event()

    async def slow(request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        await gate.wait()
        return TurnResult(reply_parts=["ok"])

    backend = FakeBackend(behaviour=slow, policy=policy(PolicyMode.ENQUEUE))
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m1")))
    await eventually(lambda: len(backend.turns) == 1)
    await registry.deliver(entry(status("w0", StatusValue.READ)))
    await eventually(lambda: backend.acks == ["tok-w0:read"])
    assert backend.commits == []

    gate.set()
    await idle(registry)
    assert backend.acks == ["tok-w0:read", "tok-m1"]
