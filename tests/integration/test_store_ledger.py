"""The store as the outbox's ledger (`OutboundLedger`), on a real DuckDB file: recording before
sending, attempts, the wamid, monotonic statuses whatever their order, dead letters and replay."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.store_helpers import FakeClock, chat, outbound
from whatsray.outbox.ledger import InMemoryLedger, OutboundLedger, OutboundRecord
from whatsray.store import Store, UnknownOutboundError

pytestmark = pytest.mark.integration

RANK = {"pending": 0, "sent": 1, "delivered": 2, "read": 3}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    async with Store(tmp_path / "ledger.duckdb", now=clock) as s:
        yield s


async def _sent(store: Store, outbound_id: str, wamid: str) -> None:
    assert await store.record_outbound(outbound(outbound_id))
    await store.mark_sent(outbound_id, wamid)


async def test_the_store_is_an_outbound_ledger(store: Store) -> None:
    assert isinstance(store, OutboundLedger)


async def test_recorded_before_sending_once(store: Store) -> None:
    item = outbound("t1:0", turn_id="t1", text="Hello there")
    assert await store.record_outbound(item) is True
    assert await store.record_outbound(item) is False
    record = await store.get_outbound("t1:0")
    assert record == OutboundRecord.from_item(item)  # pending, 0 attempts, no wamid
    (message,) = await store.recent_messages(chat())
    assert (message.direction, message.type, message.text) == ("out", "text", "Hello there")
    assert (message.status, message.turn_id) == ("pending", "t1")
    assert await store.get_chat(chat()) is not None  # a chat we only ever wrote to is listed
    assert await store.get_outbound("nope") is None


async def test_attempts_are_counted_before_each_send(store: Store) -> None:
    await store.record_outbound(outbound("o1"))
    assert await store.note_attempt("o1") == 1
    assert await store.note_attempt("o1", last_error="130429 rate limit") == 2
    # Concurrent notes (one batch) still count one each.
    assert sorted(await asyncio.gather(*(store.note_attempt("o1") for _ in range(3)))) == [3, 4, 5]
    record = await store.get_outbound("o1")
    assert record is not None
    assert (record.attempts, record.last_error, record.status) == (
        5,
        "130429 rate limit",
        "pending",
    )
    with pytest.raises(KeyError):
        await store.note_attempt("missing")


async def test_mark_sent_stores_the_wamid(store: Store) -> None:
    await _sent(store, "o1", "wamid.1")
    record = await store.get_outbound("o1")
    assert record is not None
    assert (record.status, record.wamid) == ("sent", "wamid.1")
    (message,) = await store.recent_messages(chat())
    assert (message.status, message.wamid) == ("sent", "wamid.1")
    with pytest.raises(UnknownOutboundError):
        await store.mark_sent("missing", "wamid.2")


def _expected(arrivals: tuple[str, ...]) -> str:
    if "failed" in arrivals:
        return "failed"
    return max(arrivals, key=RANK.__getitem__)


ORDERS = [
    *itertools.permutations(("sent", "delivered", "read", "failed")),
    *itertools.permutations(("sent", "delivered", "read")),
    ("read", "read", "sent", "delivered", "delivered"),
    ("delivered", "failed", "read", "failed", "sent"),
    ("played", "sent"),
]


async def test_statuses_merge_monotonically_whatever_the_order(store: Store) -> None:
    for i in range(len(ORDERS)):
        await _sent(store, f"o{i}", f"wamid.{i}")

    async def deliver(i: int, arrivals: tuple[str, ...]) -> list[str | None]:
        # One message's webhooks one after another; all messages at once (shared batches).
        return [
            await store.apply_status(f"wamid.{i}", status, 1_750_000_100.0 + n, None)
            for n, status in enumerate(arrivals)
        ]

    seen = await asyncio.gather(*(deliver(i, order) for i, order in enumerate(ORDERS)))
    for i, (order, results) in enumerate(zip(ORDERS, seen, strict=True)):
        record = await store.get_outbound(f"o{i}")
        assert record is not None
        expected = _expected(tuple("read" if s == "played" else s for s in order))
        assert record.status == expected, order
        assert results[-1] == expected
        ranks = [(r == "failed", RANK.get(r or "", 0)) for r in results]
        assert ranks == sorted(ranks), (order, results)  # never moved backwards
        (message,) = [m for m in await store.recent_messages(chat()) if m.id == f"o{i}"]
        assert message.status == expected
        assert [h.status for h in message.status_history] == list(order)  # every arrival


async def test_a_burst_of_statuses_for_one_message_in_one_batch(store: Store) -> None:
    await _sent(store, "o1", "wamid.1")
    arrivals = ["read", "sent", "delivered", "read", "sent"]
    results = await asyncio.gather(
        *(store.apply_status("wamid.1", s, float(n), None) for n, s in enumerate(arrivals))
    )
    assert results == ["read"] * 5
    record = await store.get_outbound("o1")
    assert record is not None and record.status == "read"


async def test_statuses_that_overtake_mark_sent_are_kept_and_merged(store: Store) -> None:
    await store.record_outbound(outbound("o1"))
    assert await store.apply_status("wamid.early", "delivered", 10.0, None) is None
    assert await store.apply_status("wamid.early", "read", 11.0, None) is None
    assert await store.apply_status("wamid.stranger", "read", 11.0, None) is None
    await store.mark_sent("o1", "wamid.early")
    record = await store.get_outbound("o1")
    assert record is not None and record.status == "read"
    (message,) = await store.recent_messages(chat())
    assert [(h.status, h.at) for h in message.status_history] == [
        ("delivered", 10.0),
        ("read", 11.0),
    ]
    # Merged statuses are consumed: a later status still merges normally.
    assert await store.apply_status("wamid.early", "sent", 12.0, None) == "read"


async def test_a_failed_status_is_final_and_keeps_its_code(store: Store) -> None:
    await _sent(store, "o1", "wamid.1")
    assert await store.apply_status("wamid.1", "failed", 5.0, 131026) == "failed"
    assert await store.apply_status("wamid.1", "read", 6.0, None) == "failed"
    await store.mark_sent("o1", "wamid.1")
    record = await store.get_outbound("o1")
    assert record is not None
    assert record.status == "failed"
    assert record.last_error is not None and "131026" in record.last_error
    (message,) = await store.recent_messages(chat())
    assert message.status_history[0].error_code == 131026


async def test_mark_failed_is_final(store: Store) -> None:
    await store.record_outbound(outbound("o1"))
    await store.mark_failed("o1", "permanent:131026", 131026)
    await store.mark_sent("o1", "wamid.1")
    record = await store.get_outbound("o1")
    assert record is not None
    assert (record.status, record.last_error, record.wamid) == (
        "failed",
        "permanent:131026",
        "wamid.1",
    )


async def test_dead_letters_list_and_replay(store: Store, clock: FakeClock) -> None:
    for i in range(3):
        await store.record_outbound(outbound(f"o{i}"))
    first = await store.add_dead_letter("o0", "outside_window", None, "24h window closed")
    clock.advance(1)
    second = await store.add_dead_letter("o1", "permanent:131026", 131026, None)
    # Asked again (an outbox restarted mid-way): the same dead letter, not a second one.
    assert await store.add_dead_letter("o1", "permanent:131026", 131026, None) == second
    assert await store.count_dead_letters() == 2
    record = await store.get_outbound("o1")
    assert record is not None
    assert (record.status, record.last_error) == ("dead", "permanent:131026")

    letters = await store.list_dead_letters()
    assert [d.dead_letter_id for d in letters] == [second, first]  # newest first
    letter = await store.get_dead_letter(first)
    assert letter is not None
    assert (letter.outbound_id, letter.reason, letter.details) == (
        "o0",
        "outside_window",
        "24h window closed",
    )

    await store.mark_dead_letter_replayed(first, "o0:replay", 99.0)
    await store.mark_dead_letter_replayed(first, "o0:again", 100.0)  # the first call wins
    await store.mark_dead_letter_replayed("no-such-letter", "x", 1.0)  # ignored
    replayed = await store.get_dead_letter(first)
    assert replayed is not None
    assert (replayed.replayed_at, replayed.replay_outbound_id) == (99.0, "o0:replay")
    assert [d.dead_letter_id for d in await store.list_dead_letters()] == [second]
    assert len(await store.list_dead_letters(include_replayed=True)) == 2
    # Once replayed, the same message can be parked again as a new dead letter.
    again = await store.add_dead_letter("o0", "retries_exhausted:131000", 131000, None)
    assert again not in (first, second)
    with pytest.raises(UnknownOutboundError):
        await store.add_dead_letter("missing", "x", None, None)


async def _scenario(ledger: OutboundLedger) -> list[object]:
    """One message life on any ledger; returns what a caller observes."""
    seen: list[object] = []
    for i in range(3):
        seen.append(await ledger.record_outbound(outbound(f"o{i}", part=i)))
    seen.append(await ledger.record_outbound(outbound("o0")))
    seen.append(await ledger.note_attempt("o0"))
    seen.append(await ledger.note_attempt("o0", "timeout"))
    await ledger.mark_sent("o0", "w0")
    await ledger.mark_sent("o1", "w1")
    for wamid, status in [("w0", "read"), ("w0", "delivered"), ("w1", "failed"), ("wx", "read")]:
        seen.append(await ledger.apply_status(wamid, status, 1.0, None))
    await ledger.mark_failed("o2", "permanent:131026", 131026)
    await ledger.add_dead_letter("o2", "permanent:131026", 131026, None)
    for i in range(3):
        seen.append(await ledger.get_outbound(f"o{i}"))
    return seen


async def test_behaves_like_the_in_memory_ledger(store: Store) -> None:
    expected = await _scenario(InMemoryLedger())
    actual = await _scenario(store)
    # The store writes its own note on a failed status; the rest must be identical.
    assert actual[:-3] == expected[:-3]
    for got, want in zip(actual[-3:], expected[-3:], strict=True):
        assert isinstance(got, OutboundRecord) and isinstance(want, OutboundRecord)
        assert (got.status, got.wamid, got.attempts, got.to_item()) == (
            want.status,
            want.wamid,
            want.attempts,
            want.to_item(),
        )
