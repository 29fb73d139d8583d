"""Tool calls stored with their turn: one transaction, read back in order, replaced with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.store_helpers import FakeClock, chat, inbound, outbound
from whatsray.store import (
    MIGRATIONS,
    Migration,
    SessionSnapshot,
    Store,
    StoreWriteError,
    ToolCallRecord,
    TurnRecord,
)

pytestmark = pytest.mark.integration


def call(turn_id: str, idx: int, name: str = "get_messages", status: str = "ok") -> ToolCallRecord:
    return ToolCallRecord(
        turn_id=turn_id,
        idx=idx,
        call_id=f"call_{idx + 1}",
        name=name,
        arguments='{"limit": 5}',
        result="cancelled" if status == "cancelled" else '{"messages": []}',
        status=status,
    )


def turn(turn_id: str) -> TurnRecord:
    return TurnRecord(turn_id=turn_id, chat=chat(), input_ids=("wamid.1",), started_at=1.0)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store(tmp_path / "whatsray.duckdb", now=FakeClock()) as s:
        yield s


async def test_tool_calls_are_stored_with_the_turn_and_read_back_in_order(store: Store) -> None:
    await store.record_inbound(inbound("wamid.1"))
    calls = [call("t1", 0, "send_message", "cancelled"), call("t1", 1), call("t1", 2, "x", "error")]
    await store.record_turn_results(
        turn("t1"),
        [outbound("t1:0", turn_id="t1")],
        SessionSnapshot(chat=chat(), agent="support", handoff=True),
        tool_calls=calls,
    )
    assert await store.list_tool_calls("t1") == calls
    assert await store.list_tool_calls("unknown") == []
    assert await store.count("tool_calls", status="cancelled") == 1


async def test_a_turn_recorded_again_replaces_its_tool_calls(store: Store) -> None:
    await store.record_turn_results(turn("t1"), tool_calls=[call("t1", 0), call("t1", 1)])
    await store.record_turn_results(turn("t1"), tool_calls=[call("t1", 0, "handoff_to_human")])
    assert [c.name for c in await store.list_tool_calls("t1")] == ["handoff_to_human"]
    await store.record_turn_results(turn("t2"), tool_calls=[call("t2", 0)])
    assert len(await store.list_tool_calls("t1")) == 1  # another turn leaves it alone


async def test_bad_tool_calls_are_refused_before_anything_is_written(store: Store) -> None:
    with pytest.raises(ValueError, match=r"numbered 0\.\.n-1"):
        await store.record_turn_results(turn("t1"), tool_calls=[call("t1", 1)])
    with pytest.raises(ValueError, match="of turn 't2'"):
        await store.record_turn_results(turn("t1"), tool_calls=[call("t2", 0)])
    assert await store.get_turn("t1") is None


async def test_turn_replies_session_and_tool_calls_land_together_or_not_at_all(
    tmp_path: Path,
) -> None:
    # A schema where the database refuses one tool call: the whole turn must fail with it.
    poisoned = Migration(
        len(MIGRATIONS) + 1,
        "refuse a tool named poison",
        (
            "DROP TABLE tool_calls",
            """CREATE TABLE tool_calls (
                turn_id VARCHAR NOT NULL, idx INTEGER NOT NULL, call_id VARCHAR NOT NULL,
                name VARCHAR NOT NULL CHECK (name <> 'poison'), arguments VARCHAR NOT NULL,
                result VARCHAR NOT NULL, status VARCHAR NOT NULL, PRIMARY KEY (turn_id, idx))""",
        ),
    )
    async with Store(tmp_path / "x.duckdb", migrations=(*MIGRATIONS, poisoned)) as store:
        await store.record_inbound(inbound("wamid.1"))
        with pytest.raises(StoreWriteError):
            await store.record_turn_results(
                turn("t1"),
                [outbound("t1:0", turn_id="t1")],
                SessionSnapshot(chat=chat(), agent="support", handoff=True),
                tool_calls=[call("t1", 0), call("t1", 1, "poison")],
            )
        assert await store.get_turn("t1") is None
        assert await store.get_outbound("t1:0") is None
        assert await store.list_tool_calls("t1") == []
        record = await store.get_chat(chat())
        assert record is not None and record.handoff is False and record.agent is None
        message = await store.get_message("wamid.1")
        assert message is not None and message.turn_id is None  # still waiting for its turn
