"""Double-texting: coalesce, enqueue, reject and interrupt, on a fake clock."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from tests.unit.session_harness import (
    FakeBackend,
    FakeClock,
    entry,
    eventually,
    idle,
    message,
    policy,
    settle,
    texts,
)
from whatsray.session import (
    CANCELLED,
    DEFAULT_REJECT_REPLY,
    DoubleTextingPolicy,
    PolicyMode,
    SessionConfig,
    SessionRegistry,
    ToolCallJournal,
    ToolCallStatus,
    TurnRequest,
    TurnResult,
)


async def test_coalesce_gives_one_turn_for_three_quick_messages() -> None:
    clock, backend = FakeClock(), FakeBackend()  # the default: coalesce, quiet 1.5 s, max 6 s
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m1", "hi")))
    await clock.advance(0.5)
    await registry.deliver(entry(message("m2", "are you")))
    await clock.advance(0.5)
    await registry.deliver(entry(message("m3", "there?")))
    await clock.advance(1.25)  # 1.25 s of quiet since m3: not yet
    assert backend.turns == []
    assert backend.acks == []

    await clock.advance(0.25)  # 1.5 s of quiet
    await idle(registry)
    assert [texts(t) for t in backend.turns] == [["hi", "are you", "there?"]]
    assert backend.acks == ["tok-m1", "tok-m2", "tok-m3"]


async def test_coalesce_respects_the_max_wait() -> None:
    clock = FakeClock()
    backend = FakeBackend(policy=policy(PolicyMode.COALESCE, quiet_period_s=1.5, max_wait_s=6.0))
    registry = backend.registry(clock)
    for n in range(6):  # one message a second: the quiet period never comes
        await registry.deliver(entry(message(f"m{n}", str(n))))
        await clock.advance(1.0)
    await idle(registry)  # at 6 s after the first message the turn ran anyway
    assert [texts(t) for t in backend.turns] == [["0", "1", "2", "3", "4", "5"]]

    await registry.deliver(entry(message("m6", "6")))
    await clock.advance(1.5)
    await idle(registry)
    assert [texts(t) for t in backend.turns][1:] == [["6"]]


async def test_coalesce_does_not_merge_into_a_running_turn() -> None:
    clock, gate = FakeClock(), asyncio.Event()

    async def slow(request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        if texts(request) == ["first"]:
            await gate.wait()
        return TurnResult(reply_parts=["ok"])

    backend = FakeBackend(behaviour=slow, policy=policy(PolicyMode.COALESCE, quiet_period_s=1.0))
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m1", "first")))
    await clock.advance(1.0)
    await eventually(lambda: len(backend.turns) == 1)
    await registry.deliver(entry(message("m2", "second")))
    await registry.deliver(entry(message("m3", "third")))
    await clock.advance(5.0)  # they wait for the running turn, not for the clock
    assert len(backend.turns) == 1

    gate.set()
    await eventually(lambda: len(backend.commits) == 1)
    await clock.advance(1.0)
    await idle(registry)
    assert [texts(t) for t in backend.turns] == [["first"], ["second", "third"]]


async def test_enqueue_runs_every_message_as_its_own_turn_in_order() -> None:
    clock = FakeClock()
    backend = FakeBackend(policy=policy(PolicyMode.ENQUEUE))
    registry = backend.registry(clock)
    for n in range(3):
        await registry.deliver(entry(message(f"m{n}", f"msg {n}")))
    await idle(registry)

    assert [texts(t) for t in backend.turns] == [["msg 0"], ["msg 1"], ["msg 2"]]
    # Each turn sees the earlier ones, with their replies, in its history.
    assert [h.text for h in backend.turns[2].history] == [
        "msg 0",
        "echo: msg 0",
        "msg 1",
        "echo: msg 1",
    ]
    assert backend.acks == ["tok-m0", "tok-m1", "tok-m2"]


async def test_reject_answers_politely_while_a_turn_runs() -> None:
    clock, gate = FakeClock(), asyncio.Event()

    async def slow(request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        await gate.wait()
        return TurnResult(reply_parts=["answer"])

    backend = FakeBackend(behaviour=slow, policy=policy(PolicyMode.REJECT))
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m1", "question")))
    await eventually(lambda: len(backend.turns) == 1)
    await registry.deliver(entry(message("m2", "hello?")))
    await registry.deliver(entry(message("m3", "??")))
    await eventually(lambda: len(backend.acks) == 2)

    # Recorded, one polite reply, acked after the record: all while the turn still runs.
    assert backend.records == [(str(backend.turns[0].chat), ("m2", "m3"), "rejected")]
    assert backend.replies == [(str(backend.turns[0].chat), DEFAULT_REJECT_REPLY, "m3")]
    assert backend.acks == ["tok-m2", "tok-m3"]
    assert backend.commits == []

    gate.set()
    await idle(registry)
    assert [texts(t) for t in backend.turns] == [["question"]]  # no turn for the rejected ones
    assert backend.acks == ["tok-m2", "tok-m3", "tok-m1"]
    stats = registry.stats()
    assert stats.rejected == 2
    assert stats.unacked == 0

    # The history has them all, in the order they happened.
    state = registry.state_of(backend.turns[0].chat)
    assert state is not None
    assert [h.text for h in state.history] == [
        "question",
        "hello?",
        "??",
        DEFAULT_REJECT_REPLY,
        "answer",
    ]


async def test_reject_runs_a_burst_that_came_before_the_turn_as_one_turn() -> None:
    clock = FakeClock()
    backend = FakeBackend(policy=policy(PolicyMode.REJECT, reject_reply="busy"))
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m1", "a")))
    await registry.deliver(entry(message("m2", "b")))
    await idle(registry)
    assert [texts(t) for t in backend.turns] == [["a", "b"]]
    assert backend.replies == []


async def test_interrupt_cancels_and_reruns_with_all_input() -> None:
    clock = FakeClock()
    cancelled: list[str] = []

    async def agent(request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        if request.attempt == 1:
            journal.started("c1", "search", '{"q": "shoes"}')
            journal.finished("c1", "3 results")
            journal.started("c2", "book", '{"id": 7}')
            try:
                await asyncio.Event().wait()  # never finishes by itself
            except asyncio.CancelledError:
                cancelled.append(request.turn_id)
                raise
        return TurnResult(reply_parts=["done"], agent="sales")

    backend = FakeBackend(behaviour=agent, policy=policy(PolicyMode.INTERRUPT))
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m1", "book the shoes")))
    await eventually(lambda: len(backend.turns) == 1)
    await settle()
    await registry.deliver(entry(message("m2", "actually the red ones")))
    await idle(registry)

    first, rerun = backend.turns
    assert cancelled == [first.turn_id]
    assert texts(rerun) == ["book the shoes", "actually the red ones"]
    assert rerun.attempt == 2
    assert rerun.turn_id != first.turn_id
    calls = {c.call_id: c for c in rerun.interrupted_tool_calls}
    assert calls["c1"].status is ToolCallStatus.OK
    assert calls["c1"].result == "3 results"
    assert calls["c2"].status is ToolCallStatus.CANCELLED
    assert calls["c2"].result == CANCELLED

    # One commit, for the rerun; the first attempt's input is acked only after it.
    assert [request.input_ids for request, _ in backend.commits] == [("m1", "m2")]
    kinds = [kind for kind, _ in backend.timeline]
    assert kinds.index("commit") < kinds.index("ack")
    assert backend.acks == ["tok-m1", "tok-m2"]
    assert registry.stats().interrupts == 1


async def test_interrupt_with_nothing_running_starts_a_turn_at_once() -> None:
    clock = FakeClock()
    backend = FakeBackend(policy=policy(PolicyMode.INTERRUPT))
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m1", "hi")))
    await idle(registry)
    assert [texts(t) for t in backend.turns] == [["hi"]]
    assert registry.stats().interrupts == 0


async def test_the_policy_follows_the_agent_in_charge() -> None:
    clock = FakeClock()
    chosen: list[str | None] = []

    async def agent(request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        return TurnResult(reply_parts=["ok"], agent="support")

    backend = FakeBackend(behaviour=agent)
    hooks = backend.hooks()
    policies = {None: policy(PolicyMode.ENQUEUE), "support": policy(PolicyMode.COALESCE)}

    def policy_for(agent_name: str | None) -> DoubleTextingPolicy:
        chosen.append(agent_name)
        return policies[agent_name]

    registry = SessionRegistry(
        replace(hooks, policy_for=policy_for),
        SessionConfig(turn_timeout_s=None),
        now=clock.now,
        sleep=clock.sleep,
    )
    await registry.deliver(entry(message("m1")))
    await idle(registry)  # enqueue: no waiting
    await registry.deliver(entry(message("m2")))
    await settle()
    assert len(backend.turns) == 1  # now "support" is in charge: coalesce waits
    await clock.advance(1.5)
    await idle(registry)
    assert len(backend.turns) == 2
    assert chosen[:2] == [None, "support"]


def test_policy_values() -> None:
    assert DoubleTextingPolicy.parse(" Enqueue ").mode is PolicyMode.ENQUEUE
    assert DoubleTextingPolicy.parse("coalesce", quiet_period_s=0.5).quiet_period_s == 0.5
    with pytest.raises(ValueError, match="known: coalesce, enqueue, reject, interrupt"):
        DoubleTextingPolicy.parse("debounce")
    with pytest.raises(ValueError, match="reject_reply"):
        DoubleTextingPolicy(PolicyMode.REJECT, reject_reply="  ")
    with pytest.raises(ValueError, match=">= 0"):
        DoubleTextingPolicy(quiet_period_s=-1)
