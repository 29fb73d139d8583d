"""A scheduled input is a turn like a message, but it never counts as the user writing."""

from __future__ import annotations

from tests.unit.session_harness import (
    START,
    FakeBackend,
    FakeClock,
    chat_key,
    entry,
    idle,
    message,
    policy,
    texts,
)
from whatsray.session import PolicyMode
from whatsray.session.scheduled import scheduled_event


async def test_a_reminder_runs_a_turn_without_moving_the_last_inbound_time() -> None:
    clock = FakeClock()
    backend = FakeBackend(policy=policy(PolicyMode.ENQUEUE))
    registry = backend.registry(clock)
    await registry.deliver(entry(message("wamid.1", "hi", at=START)))
    await idle(registry)
    event = scheduled_event(
        run_id="j1@a",
        job_id="j1",
        job_name="water",
        chat=chat_key(),
        instruction="drink water",
        scheduled_for=START + 3600,
        due_at=START + 3600,
    )
    await registry.deliver(entry(event))
    await idle(registry)
    first, second = backend.turns
    assert texts(second) == ["[Scheduled reminder] drink water"]
    assert first.last_inbound_at == START
    assert second.last_inbound_at == START  # the user's, not the reminder's
    assert backend.acks == ["tok-wamid.1", "tok-j1@a"]
    await registry.close()


async def test_a_reminder_alone_in_a_new_chat_has_no_last_inbound_time() -> None:
    clock = FakeClock()
    backend = FakeBackend(policy=policy(PolicyMode.ENQUEUE))
    registry = backend.registry(clock)
    event = scheduled_event(
        run_id="j1@b",
        job_id="j1",
        job_name="water",
        chat=chat_key(),
        instruction="drink water",
        scheduled_for=START,
        due_at=START,
    )
    await registry.deliver(entry(event))
    await idle(registry)
    [turn] = backend.turns
    assert turn.last_inbound_at is None
    await registry.close()
