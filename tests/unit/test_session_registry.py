"""The registry: activation, passivation, history window, invalidation, idle memory."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import pytest

from tests.unit.session_harness import (
    FakeBackend,
    FakeClock,
    chat_key,
    entry,
    eventually,
    idle,
    message,
    policy,
    settle,
)
from whatsray.session import (
    EMPTY_STATE,
    HistoryMessage,
    InboundEntry,
    NonMessageEvent,
    PolicyMode,
    RecordReason,
    SessionConfig,
    SessionHooks,
    SessionRegistry,
    SessionState,
    ToolCallJournal,
    TurnRequest,
    TurnResult,
)
from whatsray.whatsapp.events import ChatKey, MessageEvent

ENQUEUE = policy(PolicyMode.ENQUEUE)


async def test_idle_sessions_are_passivated_and_rebuilt_from_load_state() -> None:
    clock, backend = FakeClock(), FakeBackend(policy=ENQUEUE)
    registry = backend.registry(clock, SessionConfig(idle_timeout_s=3600, turn_timeout_s=None))
    chat = chat_key()
    await registry.deliver(entry(message("m1", "remember me")))
    await idle(registry)
    assert backend.loads == [str(chat)]
    assert chat in registry

    await clock.advance(3599)
    assert await registry.sweep() == 0
    await clock.advance(1)
    assert await registry.sweep() == 1
    assert chat not in registry
    assert registry.state_of(chat) is None

    await registry.deliver(entry(message("m2", "still there?")))
    await idle(registry)
    assert backend.loads == [str(chat), str(chat)]  # rebuilt from the store
    assert [h.text for h in backend.turns[1].history] == ["remember me", "echo: remember me"]
    stats = registry.stats()
    assert (stats.activations, stats.passivations) == (2, 1)


async def test_sweep_never_drops_a_busy_session_and_keeps_recent_ones() -> None:
    clock, gate = FakeClock(), asyncio.Event()
    busy_chat, old_chat, new_chat = chat_key("1"), chat_key("2"), chat_key("3")

    async def agent(request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        if request.chat == busy_chat:
            await gate.wait()
        return TurnResult(reply_parts=["ok"])

    backend = FakeBackend(behaviour=agent, policy=ENQUEUE)
    registry = backend.registry(clock, SessionConfig(idle_timeout_s=60, turn_timeout_s=None))
    await registry.deliver(entry(message("b1", chat=busy_chat)))
    await registry.deliver(entry(message("o1", chat=old_chat)))
    await eventually(lambda: len(backend.acks) == 1)
    await clock.advance(30)
    await registry.deliver(entry(message("n1", chat=new_chat)))
    await eventually(lambda: len(backend.acks) == 2)
    await clock.advance(40)  # old: idle 70 s, new: idle 40 s, busy: still in its turn

    assert await registry.sweep() == 1
    assert (busy_chat in registry, old_chat in registry, new_chat in registry) == (
        True,
        False,
        True,
    )
    gate.set()
    await idle(registry)
    assert busy_chat in registry


async def test_the_history_window_is_bounded() -> None:
    clock = FakeClock()
    backend = FakeBackend(policy=ENQUEUE)
    long_past = tuple(HistoryMessage("user", f"old {n}", float(n)) for n in range(10))
    backend.seed[str(chat_key())] = SessionState(history=long_past)
    registry = backend.registry(clock, SessionConfig(history_limit=4, turn_timeout_s=None))
    for n in range(3):
        await registry.deliver(entry(message(f"m{n}", f"new {n}")))
    await idle(registry)

    windows = [[h.text for h in t.history] for t in backend.turns]
    assert windows == [
        ["old 6", "old 7", "old 8", "old 9"],  # a store that returns more is cut
        ["old 8", "old 9", "new 0", "echo: new 0"],
        ["new 0", "echo: new 0", "new 1", "echo: new 1"],
    ]
    state = registry.state_of(chat_key())
    assert state is not None
    assert len(state.history) == 4


async def test_invalidate_drops_an_idle_session_and_reloads_a_busy_one() -> None:
    clock, gate = FakeClock(), asyncio.Event()

    async def agent(request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        if request.input_ids == ("m1",):
            await gate.wait()
        return TurnResult(reply_parts=["ok"])

    backend = FakeBackend(behaviour=agent, policy=ENQUEUE)
    chat = chat_key()
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m1")))
    await registry.deliver(entry(message("m2")))
    await eventually(lambda: len(backend.turns) == 1)
    backend.seed[str(chat)] = SessionState(agent="billing")  # an admin changed the chat
    registry.invalidate(chat)
    gate.set()
    await idle(registry)
    assert backend.loads == [str(chat), str(chat)]
    assert backend.turns[1].agent == "billing"

    registry.invalidate(chat)
    assert chat not in registry


async def test_an_idle_session_holds_no_task() -> None:
    clock, backend = FakeClock(), FakeBackend(policy=ENQUEUE)
    registry = backend.registry(clock)
    for n in range(50):
        await registry.deliver(entry(message(f"m{n}", chat=chat_key(str(n)))))
    await idle(registry)
    await settle()
    assert len(registry) == 50
    assert registry.stats().busy == 0
    assert len(asyncio.all_tasks()) == 1  # just this test


class _LeanHooks:
    """Hooks that keep nothing, so the memory test measures the sessions alone."""

    def __init__(self) -> None:
        self.acked = 0
        self.result = TurnResult(reply_parts=["Thanks, noted!"], agent="assistant")

    async def load_state(self, chat: ChatKey) -> SessionState:
        return EMPTY_STATE

    async def run_turn(self, request: TurnRequest, journal: ToolCallJournal) -> TurnResult:
        return self.result

    async def commit_turn(self, request: TurnRequest, result: TurnResult) -> None:
        return None

    async def ack(self, tokens: tuple[str, ...]) -> None:
        self.acked += len(tokens)

    async def on_status(self, event: NonMessageEvent) -> None:
        return None

    async def record(
        self, chat: ChatKey, events: tuple[MessageEvent, ...], reason: RecordReason
    ) -> None:
        return None

    async def send_reply(self, chat: ChatKey, text: str, in_reply_to: MessageEvent) -> None:
        return None

    def hooks(self) -> SessionHooks:
        return SessionHooks(
            load_state=self.load_state,
            run_turn=self.run_turn,
            commit_turn=self.commit_turn,
            ack=self.ack,
            on_status=self.on_status,
            record_messages=self.record,
            send_reply=self.send_reply,
            policy_for=lambda agent: ENQUEUE,
        )


IDLE_SESSIONS = 10_000
TEXT = "Hi, is the shop open today?"


async def test_10000_idle_sessions_stay_well_under_10_kb_each() -> None:
    lean = _LeanHooks()
    registry = SessionRegistry(lean.hooks())  # the real clock: nothing here waits
    await registry.deliver(entry(message("warm-up", chat=chat_key("0"))))  # first-use caches
    await idle(registry)
    gc.collect()

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for batch in range(IDLE_SESSIONS // 1000):
            for n in range(batch * 1000, (batch + 1) * 1000):
                # Each chat said one thing and got one reply: a history of two messages.
                chat = chat_key(f"1555{n:07d}")
                event = message(f"wamid.HBgLMTU1NTAwMDExMTEVAgASGBQz{n:010d}", TEXT, chat)
                await registry.deliver(InboundEntry(chat, event, f"1700000000000-{n}"))
            await idle(registry)
        await settle()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    assert lean.acked == IDLE_SESSIONS + 1
    assert len(registry) == IDLE_SESSIONS + 1
    assert registry.stats().busy == 0
    per_session = grown / IDLE_SESSIONS
    print(f"\nidle session: {per_session:.0f} bytes each ({IDLE_SESSIONS} sessions)")
    assert 0 < per_session < 10_000


def test_session_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="history_limit"):
        SessionConfig(history_limit=-1)
    with pytest.raises(ValueError, match="idle_timeout_s"):
        SessionConfig(idle_timeout_s=0)
    with pytest.raises(ValueError, match="turn_timeout_s"):
        SessionConfig(turn_timeout_s=0)
    with pytest.raises(ValueError, match="retry_initial_s"):
        SessionConfig(retry_initial_s=5, retry_max_s=1)


async def test_a_closed_registry_refuses_deliveries() -> None:
    clock, backend = FakeClock(), FakeBackend()
    registry = backend.registry(clock)
    await registry.close()
    with pytest.raises(RuntimeError, match="closed"):
        await registry.deliver(entry(message("m1")))
