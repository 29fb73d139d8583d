"""A redelivered entry never reaches a turn twice: copies of an event only add their ack token.

After a host restart the consumer re-reads pending entries and reclaims stale ones, so the same
event (same `wamid`, often under another stream entry id) can be offered again while a copy is
queued, in the running turn, or already committed. Every test checks that no turn sees an input
twice (as an input or in its history) and that every ack token is acked exactly once.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.unit.session_harness import (
    FakeBackend,
    FakeClock,
    chat_key,
    entry,
    idle,
    message,
    policy,
    settle,
)
from whatsray.session import (
    HistoryMessage,
    PolicyMode,
    SessionConfig,
    SessionState,
    ToolCallJournal,
    TurnRequest,
    TurnResult,
)

ENQUEUE = policy(PolicyMode.ENQUEUE)
COALESCE = policy(PolicyMode.COALESCE, quiet_period_s=2.0, max_wait_s=10.0)


def assert_each_input_once(backend: FakeBackend, tokens: set[str]) -> None:
    seen: list[str] = []
    for request in backend.turns:
        ids = request.input_ids
        assert len(set(ids)) == len(ids), f"a turn got an input twice: {ids}"
        in_history = {h.message_id for h in request.history} & set(ids)
        assert not in_history, f"an input is also in the turn's history: {in_history}"
        if request.attempt == 1:
            seen.extend(ids)
    assert len(set(seen)) == len(seen), f"an input reached two turns: {seen}"
    acked = Counter(backend.acks)
    assert set(acked) == tokens, (acked, tokens)
    assert all(n == 1 for n in acked.values()), acked


class Gate:
    """A turn that waits until `open` (the test controls when it ends)."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()

    async def __call__(self, request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        await self.opened.wait()
        return TurnResult(reply_parts=(f"echo: {len(request.inputs)}",))


async def test_a_copy_offered_while_coalescing_joins_the_original() -> None:
    clock, backend = FakeClock(), FakeBackend(policy=COALESCE)
    registry = backend.registry(clock)
    a, b = message("a"), message("b")
    await registry.deliver(entry(a, "a#1"))
    await registry.deliver(entry(b, "b#1"))
    await registry.deliver(entry(a, "a#2"))  # the same event under another entry id
    await clock.advance(1.0)
    await registry.deliver(entry(b, "b#2"))
    await clock.advance(5.0)
    await idle(registry)
    assert [t.input_ids for t in backend.turns] == [("a", "b")]
    assert_each_input_once(backend, {"a#1", "a#2", "b#1", "b#2"})
    assert registry.stats().unacked == 0


async def test_copies_offered_while_queued_behind_a_turn_join_their_originals() -> None:
    clock, gate = FakeClock(), Gate()
    backend = FakeBackend(policy=ENQUEUE, behaviour=gate)
    registry = backend.registry(clock)
    for token in ("a#1", "b#1", "c#1"):
        await registry.deliver(entry(message(token[0]), token))
    await settle()  # a's turn runs; b and c wait
    for token in ("b#2", "c#2", "b#3"):
        await registry.deliver(entry(message(token[0]), token))
    gate.opened.set()
    await idle(registry)
    assert [t.input_ids for t in backend.turns] == [("a",), ("b",), ("c",)]
    assert_each_input_once(backend, {"a#1", "b#1", "c#1", "b#2", "c#2", "b#3"})
    assert registry.stats().duplicates == 3


async def test_a_copy_offered_while_its_turn_runs_is_acked_with_it() -> None:
    clock, gate = FakeClock(), Gate()
    backend = FakeBackend(policy=ENQUEUE, behaviour=gate)
    registry = backend.registry(clock)
    await registry.deliver(entry(message("a"), "a#1"))
    await settle()
    assert len(backend.turns) == 1  # running
    await registry.deliver(entry(message("a"), "a#2"))
    await registry.deliver(entry(message("a"), "a#1"))  # the same stream entry again
    await settle()
    assert backend.acks == []  # nothing before the commit
    gate.opened.set()
    await idle(registry)
    assert len(backend.turns) == 1
    assert_each_input_once(backend, {"a#1", "a#2"})
    assert registry.stats().unacked == 0


async def test_a_copy_offered_while_a_failed_commit_is_retried_is_not_run_again() -> None:
    clock = FakeClock()
    backend = FakeBackend(policy=ENQUEUE, commit_failures=1)
    config = SessionConfig(turn_timeout_s=None, retry_initial_s=0.5, retry_jitter=0.0)
    registry = backend.registry(clock, config)
    await registry.deliver(entry(message("a"), "a#1"))
    await settle()
    assert [k for k, _ in backend.timeline][-1] == "commit-failed"  # backing off
    await registry.deliver(entry(message("a"), "a#2"))
    await registry.deliver(entry(message("b"), "b#1"))
    await clock.advance(0.5)
    await idle(registry)
    assert [t.input_ids for t in backend.turns] == [("a",), ("b",)]
    assert_each_input_once(backend, {"a#1", "a#2", "b#1"})


async def test_a_copy_of_a_committed_input_is_deduped_even_while_the_state_is_invalidated() -> None:
    clock, gate = FakeClock(), Gate()
    backend = FakeBackend(policy=ENQUEUE, behaviour=gate)
    registry = backend.registry(clock)
    gate.opened.set()
    await registry.deliver(entry(message("a"), "a#1"))
    await settle()
    gate.opened.clear()
    await registry.deliver(entry(message("b"), "b#1"))
    await settle()  # b's turn runs, a is committed
    registry.invalidate(chat_key())  # e.g. an admin changed the chat: reload before the next turn
    await registry.deliver(entry(message("a"), "a#2"))  # a's ack was lost: redelivered
    await settle()
    gate.opened.set()
    await idle(registry)
    assert [t.input_ids for t in backend.turns] == [("a",), ("b",)]
    assert_each_input_once(backend, {"a#1", "a#2", "b#1"})


async def test_an_input_the_store_kept_before_its_turn_committed_is_not_in_its_history() -> None:
    # The pipeline may store a user's message before the turn commits; after a crash the store's
    # history holds it (not as committed) and the stream redelivers it as an input.
    clock, backend = FakeClock(), FakeBackend(policy=ENQUEUE)
    chat = chat_key()
    earlier = (
        HistoryMessage("user", "hello", 1.0, "m0"),
        HistoryMessage("assistant", "hi!", 2.0),
        HistoryMessage("user", "text of m1", 3.0, "m1"),  # stored, its turn never committed
    )
    backend.seed[str(chat)] = SessionState(history=earlier, recent_event_ids=("m0",))
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m1"), "m1#1"))
    await registry.deliver(entry(message("m1"), "m1#2"))
    await idle(registry)
    [turn] = backend.turns
    assert [h.text for h in turn.history] == ["hello", "hi!"]
    assert_each_input_once(backend, {"m1#1", "m1#2"})
    state = registry.state_of(chat)
    assert state is not None
    assert [h.message_id for h in state.history] == ["m0", None, "m1", None]  # m1 once
