"""Nothing wedges (docs/errors.md): a permanent failure, or a transient one that outlasts its
deadline, quarantines the one item, acks it, and the chat goes on with its next message. And a
message that asks for no answer (a reaction) is recorded, not answered."""

from __future__ import annotations

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
from whatsray.session import PolicyMode, SessionConfig, SessionState
from whatsray.whatsapp.errors import MessageValidationError
from whatsray.whatsapp.events import MessageEvent
from whatsray.whatsapp.message_content import MessageType, ReactionContent

ENQUEUE = policy(PolicyMode.ENQUEUE)


def invalid_from() -> Exception:
    return MessageValidationError("'from' is neither a phone number nor a BSUID", code=100)


async def test_a_permanent_commit_failure_is_quarantined_at_once_and_the_chat_goes_on() -> None:
    clock = FakeClock()
    backend = FakeBackend(policy=ENQUEUE, commit_failures=1, failure=invalid_from)
    registry = backend.registry(clock)
    await registry.deliver(entry(message("bad")))
    await registry.deliver(entry(message("next")))
    await idle(registry)  # no clock advance: a permanent error is never retried

    [item] = backend.quarantined
    assert item.stage == "commit_turn" and item.reason == "permanent"
    assert "MessageValidationError" in item.error and "[100]" in item.error
    assert [e.idempotency_key for e in item.events] == ["bad"]
    assert item.turn_id == backend.turns[0].turn_id
    assert [r.input_ids for r, _ in backend.commits] == [("next",)]
    assert sorted(backend.acks) == ["tok-bad", "tok-next"]
    kinds = [kind for kind, _ in backend.timeline]
    assert kinds.index("quarantine") < kinds.index("ack")  # stored before it is acked
    stats = registry.stats()
    assert stats.unacked == 0 and stats.quarantined == 1 and stats.retries == 0


async def test_a_transient_commit_failure_is_retried_until_its_deadline_then_quarantined() -> None:
    clock = FakeClock()
    backend = FakeBackend(policy=ENQUEUE, commit_failures=1000)
    config = SessionConfig(
        turn_timeout_s=None, retry_initial_s=1.0, retry_max_s=4.0, retry_deadline_s=30.0
    )
    registry = backend.registry(clock, config)
    await registry.deliver(entry(message("m1")))
    await clock.advance(25.0)
    assert backend.quarantined == [] and backend.acks == []  # still within its deadline
    await clock.advance(10.0)
    await settle()
    [item] = backend.quarantined
    assert item.reason == "deadline" and "ConnectionError" in item.error
    assert backend.acks == ["tok-m1"]
    assert registry.stats().retries >= 6  # 1, 2, 4, 4, 4... seconds: it kept trying

    backend.commit_failures = 0  # the store is back: the chat's next message is answered
    await registry.deliver(entry(message("m2")))
    await idle(registry)
    assert [r.input_ids for r, _ in backend.commits] == [("m2",)]
    assert registry.stats().unacked == 0


async def test_a_state_that_cannot_load_quarantines_the_chats_waiting_messages() -> None:
    clock = FakeClock()
    backend = FakeBackend(policy=ENQUEUE, load_failures=1, failure=lambda: ValueError("bad row"))
    registry = backend.registry(clock)
    await registry.deliver(entry(message("a")))
    await idle(registry)
    [item] = backend.quarantined
    assert item.stage == "load_state" and [e.idempotency_key for e in item.events] == ["a"]
    assert backend.acks == ["tok-a"] and backend.turns == []

    await registry.deliver(entry(message("b")))  # the next message loads again and is answered
    await idle(registry)
    assert [r.input_ids for r, _ in backend.commits] == [("b",)]


async def test_messages_that_cannot_be_recorded_in_a_handoff_are_quarantined() -> None:
    clock = FakeClock()
    backend = FakeBackend(
        policy=ENQUEUE,
        seed={str(chat_key()): SessionState(handoff=True)},
        record_failures=1,
        failure=lambda: TypeError("a bug"),
    )
    registry = backend.registry(clock)
    await registry.deliver(entry(message("h1")))
    await idle(registry)
    await registry.deliver(entry(message("h2")))
    await idle(registry)
    [item] = backend.quarantined
    assert item.stage == "record_messages" and item.reason == "permanent"
    assert [ids for _, ids, _ in backend.records] == [("h2",)]
    assert sorted(backend.acks) == ["tok-h1", "tok-h2"]


async def test_when_the_quarantine_record_fails_too_the_item_stays_unacked() -> None:
    clock = FakeClock()
    backend = FakeBackend(
        policy=ENQUEUE,
        commit_failures=1,
        quarantine_failures=1,
        failure=lambda: ValueError("broken"),
    )
    registry = backend.registry(clock)
    await registry.deliver(entry(message("x")))
    await registry.deliver(entry(message("y")))
    await idle(registry)
    assert backend.quarantined == []
    assert backend.acks == ["tok-y"]  # x is not acked: the stream gives it back at the next start
    assert [r.input_ids for r, _ in backend.commits] == [("y",)]
    assert registry.stats().unacked == 0  # and the session does not count it as its own any more


def reaction(wamid: str, to: str) -> MessageEvent:
    chat = chat_key()
    return MessageEvent(
        idempotency_key=wamid,
        chat=chat,
        phone_number_id=chat.phone_number_id,
        message_id=wamid,
        type=MessageType.REACTION,
        raw_type="reaction",
        content=ReactionContent(message_id=to, emoji="👍"),
        from_phone=chat.user,
    )


async def test_a_reaction_is_recorded_without_a_turn_even_during_one() -> None:
    clock = FakeClock()
    backend = FakeBackend(policy=ENQUEUE)
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m1")))
    await registry.deliver(entry(reaction("r1", to="out-1")))
    await registry.deliver(entry(message("m2")))
    await idle(registry)
    assert [r.input_ids for r, _ in backend.commits] == [("m1",), ("m2",)]
    assert [(ids, reason) for _, ids, reason in backend.records] == [(("r1",), "no_turn")]
    assert sorted(backend.acks) == ["tok-m1", "tok-m2", "tok-r1"]
    assert registry.stats().unacked == 0


async def test_in_a_handed_off_chat_a_reaction_goes_to_the_person_like_any_message() -> None:
    clock = FakeClock()
    backend = FakeBackend(policy=ENQUEUE, seed={str(chat_key()): SessionState(handoff=True)})
    registry = backend.registry(clock)
    await registry.deliver(entry(message("m0")))  # loads the state: handed off
    await idle(registry)
    await registry.deliver(entry(reaction("r1", to="out-1")))
    await idle(registry)
    assert [reason for _, _, reason in backend.records] == ["handoff", "handoff"]
