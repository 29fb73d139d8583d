"""Crash safety: ack only after commit, retries, failed turns, duplicates, handoff, shutdown."""

from __future__ import annotations

import asyncio

from tests.unit.session_harness import (
    START,
    FakeBackend,
    FakeClock,
    chat_key,
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
    DEFAULT_APOLOGY,
    PolicyMode,
    SessionConfig,
    SessionState,
    ToolCallJournal,
    ToolCallStatus,
    TurnOutcome,
    TurnRequest,
    TurnResult,
    TurnTimeoutError,
)

ENQUEUE = policy(PolicyMode.ENQUEUE)


def assert_every_ack_follows_its_commit(backend: FakeBackend) -> None:
    committed: set[str] = set()
    for kind, payload in backend.timeline:
        if kind in {"commit", "record"}:
            assert isinstance(payload, tuple)
            committed.update(payload)
        elif kind == "ack":
            assert isinstance(payload, tuple)
            for token in payload:
                assert token.removeprefix("tok-").split("#")[0] in committed, token


async def test_inputs_are_acked_only_after_their_commit() -> None:
    clock, backend = FakeClock(), FakeBackend(policy=ENQUEUE)
    registry = backend.registry(clock)
    for n in range(5):
        await registry.deliver(entry(message(f"m{n}")))
    await idle(registry)
    assert_every_ack_follows_its_commit(backend)
    assert len(backend.acks) == 5


async def test_a_failed_commit_acks_nothing_and_is_retried_with_backoff() -> None:
    clock = FakeClock()
    backend = FakeBackend(policy=ENQUEUE, commit_failures=2)
    config = SessionConfig(
        turn_timeout_s=None, retry_initial_s=0.5, retry_max_s=30.0, retry_jitter=0.0
    )
    registry = backend.registry(clock, config)
    await registry.deliver(entry(message("m1")))
    await settle()

    assert [k for k, _ in backend.timeline] == ["load", "run", "commit-failed"]
    assert backend.acks == []
    assert clock.deadlines == [START + 0.5]  # backing off, not spinning
    await clock.advance(0.5)
    assert [k for k, _ in backend.timeline][-1] == "commit-failed"
    assert backend.acks == []
    assert clock.deadlines == [START + 0.5 + 1.0]  # doubled
    await clock.advance(1.0)
    await idle(registry)

    assert [k for k, _ in backend.timeline] == [
        "load", "run", "commit-failed", "commit-failed", "commit", "ack",
    ]  # fmt: skip
    assert len(backend.turns) == 1  # the turn is not rerun: only its commit is retried
    assert backend.acks == ["tok-m1"]
    assert registry.stats().retries == 2


async def test_a_turn_that_raises_gets_an_apology_is_acked_and_the_session_goes_on() -> None:
    clock = FakeClock()

    async def agent(request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        if texts(request) == ["boom"]:
            raise RuntimeError("LLM unavailable")
        return TurnResult(reply_parts=["fine"])

    backend = FakeBackend(behaviour=agent, policy=ENQUEUE)
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m1", "boom")))
    await registry.deliver(entry(message("m2", "hello")))
    await idle(registry)

    [(failed_request, exc)] = backend.turn_errors
    assert failed_request.input_ids == ("m1",)
    assert isinstance(exc, RuntimeError)
    results = [result for _, result in backend.commits]
    assert [r.outcome for r in results] == [TurnOutcome.FAILED, TurnOutcome.OK]
    assert [r.reply_parts for r in results] == [("Sorry!",), ("fine",)]
    assert backend.acks == ["tok-m1", "tok-m2"]
    assert_every_ack_follows_its_commit(backend)
    assert registry.stats().turn_failures == 1


async def test_without_an_error_hook_the_configured_apology_is_committed() -> None:
    clock = FakeClock()

    async def broken(request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        journal.started("c1", "lookup")
        raise ValueError("bad tool output")

    backend = FakeBackend(behaviour=broken, policy=ENQUEUE)
    registry = backend.registry(clock, with_error_hook=False)
    await registry.deliver(entry(message("m1")))
    await idle(registry)

    [(_, result)] = backend.commits
    assert result.reply_parts == (DEFAULT_APOLOGY,)
    assert result.outcome is TurnOutcome.FAILED
    assert result.error == "ValueError: bad tool output"
    assert [(c.call_id, c.status, c.result) for c in result.tool_calls] == [
        ("c1", ToolCallStatus.CANCELLED, CANCELLED)
    ]
    assert backend.acks == ["tok-m1"]


async def test_a_turn_past_its_timeout_is_cancelled_and_answered_with_an_apology() -> None:
    clock, cancelled = FakeClock(), asyncio.Event()

    async def hangs(request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        journal.started("c1", "slow_tool")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    backend = FakeBackend(behaviour=hangs, policy=ENQUEUE)
    registry = backend.registry(clock, SessionConfig(turn_timeout_s=30.0))
    await registry.deliver(entry(message("m1")))
    await settle()
    await clock.advance(29.0)
    assert backend.commits == []
    await clock.advance(1.0)
    await idle(registry)

    assert cancelled.is_set()
    [(_, exc)] = backend.turn_errors
    assert isinstance(exc, TurnTimeoutError)
    [(_, result)] = backend.commits
    assert [(c.name, c.result) for c in result.tool_calls] == [("slow_tool", CANCELLED)]
    assert backend.acks == ["tok-m1"]


async def test_a_duplicate_delivery_runs_one_turn_and_every_copy_is_acked() -> None:
    clock, backend = FakeClock(), FakeBackend(policy=ENQUEUE)
    registry = backend.registry(clock)
    event = message("m1", "once")
    await registry.deliver(entry(event, "tok-m1#a"))
    await registry.deliver(entry(event, "tok-m1#b"))  # redelivered while in flight
    await registry.deliver(entry(event, "tok-m1#a"))  # the same stream entry twice
    await idle(registry)
    assert len(backend.turns) == 1
    assert backend.acks == ["tok-m1#a", "tok-m1#b"]

    await registry.deliver(entry(event, "tok-m1#c"))  # after the commit: only the ack was lost
    await idle(registry)
    assert len(backend.turns) == 1
    assert backend.acks[-1] == "tok-m1#c"
    assert_every_ack_follows_its_commit(backend)
    stats = registry.stats()
    assert (stats.duplicates, stats.unacked) == (3, 0)


async def test_a_rebuilt_registry_dedupes_redeliveries_with_the_stores_recent_ids() -> None:
    clock, backend = FakeClock(), FakeBackend(policy=ENQUEUE)
    first = backend.registry(clock)
    await first.deliver(entry(message("m1")))
    await idle(first)
    await first.close()  # the host restarts; m1 was committed (say its ack was lost)

    second = backend.registry(clock)
    await second.deliver(entry(message("m1")))
    await second.deliver(entry(message("m2")))
    await idle(second)
    assert [t.input_ids for t in backend.turns] == [("m1",), ("m2",)]
    assert backend.acks == ["tok-m1", "tok-m1", "tok-m2"]


async def test_handoff_records_and_acks_messages_without_a_turn() -> None:
    clock = FakeClock()
    backend = FakeBackend(policy=ENQUEUE)
    chat = chat_key()
    backend.seed[str(chat)] = SessionState(handoff=True, agent="human")
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m1", "hello?")))
    await registry.deliver(entry(message("m2", "anyone?")))
    await idle(registry)

    assert backend.turns == []
    assert [(ids, reason) for _, ids, reason in backend.records] in (
        [(("m1", "m2"), "handoff")],
        [(("m1",), "handoff"), (("m2",), "handoff")],
    )
    assert backend.acks == ["tok-m1", "tok-m2"]
    assert_every_ack_follows_its_commit(backend)
    state = registry.state_of(chat)
    assert state is not None
    assert [h.text for h in state.history] == ["hello?", "anyone?"]


async def test_a_turn_that_hands_off_stops_later_turns() -> None:
    clock = FakeClock()

    async def agent(request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        return TurnResult(reply_parts=["A human will answer."], outcome=TurnOutcome.HANDOFF)

    backend = FakeBackend(behaviour=agent, policy=ENQUEUE)
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m1", "talk to a person")))
    await registry.deliver(entry(message("m2", "please")))
    await idle(registry)
    assert [t.input_ids for t in backend.turns] == [("m1",)]
    assert backend.records == [(str(chat_key()), ("m2",), "handoff")]
    assert backend.acks == ["tok-m1", "tok-m2"]


async def test_close_cancels_running_turns_and_acks_nothing() -> None:
    clock, cancelled = FakeClock(), asyncio.Event()

    async def hangs(request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    backend = FakeBackend(behaviour=hangs, policy=ENQUEUE)
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m1")))
    await registry.deliver(entry(message("m2")))
    await eventually(lambda: len(backend.turns) == 1)
    await registry.close()

    assert cancelled.is_set()
    assert backend.commits == []
    assert backend.acks == []
    assert len(registry) == 0
    assert len(asyncio.all_tasks()) == 1  # only this test: nothing left running


async def test_load_state_failures_are_retried_before_anything_runs() -> None:
    clock, backend = FakeClock(), FakeBackend(policy=ENQUEUE, load_failures=2)
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m1")))
    await settle()
    assert [k for k, _ in backend.timeline] == ["load-failed"]
    assert backend.acks == []
    await clock.advance(10.0)
    await idle(registry)
    assert [k for k, _ in backend.timeline][:3] == ["load-failed", "load-failed", "load"]
    assert [t.input_ids for t in backend.turns] == [("m1",)]
    assert backend.acks == ["tok-m1"]
