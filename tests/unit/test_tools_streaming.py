"""A turn as a stream of journal events and its result: what the Ray edge sends across."""

from __future__ import annotations

import asyncio
import pickle

from pydantic import BaseModel

from tests.unit.tools_harness import FakePlatform, calls, make_agent, turn
from whatsray.agents import AgentTurnResult, JournalEvent, stream_turn
from whatsray.llm import ScriptedEngine
from whatsray.session.turns import ToolCallJournal, ToolCallStatus
from whatsray.tools import BUILTIN_TOOLS, Tool, ToolArguments, ToolContext


async def test_events_arrive_in_order_then_the_result_and_replay_into_a_journal() -> None:
    engine = ScriptedEngine([calls(("get_messages", {}), ("send_message", {"text": "hi"})), "ok"])
    items = [i async for i in stream_turn(make_agent(engine, FakePlatform()), turn("x"))]
    *events, result = items
    assert isinstance(result, AgentTurnResult)
    assert [(e.kind, e.call_id) for e in events if isinstance(e, JournalEvent)] == [
        ("started", "call_1"),
        ("finished", "call_1"),
        ("started", "call_2"),
        ("finished", "call_2"),
    ]
    journal = ToolCallJournal()
    for event in events:
        assert isinstance(event, JournalEvent)
        pickle.loads(pickle.dumps(event)).apply(journal)  # as it crosses Ray
    assert journal.calls == result.tool_calls
    assert pickle.loads(pickle.dumps(result)) == result


class NoArgs(ToolArguments):
    pass


async def test_closing_the_stream_mid_tool_cancels_the_turn() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def slow(args: BaseModel, ctx: ToolContext) -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    registry = BUILTIN_TOOLS.with_tools(Tool("slow", "Slow.", NoArgs, slow))
    agent = make_agent(ScriptedEngine([calls(("slow", {}))]), registry=registry, tools=["slow"])
    journal = ToolCallJournal()
    crossed = asyncio.Event()

    async def consume() -> None:
        async for item in stream_turn(agent, turn("x")):
            assert isinstance(item, JournalEvent)
            item.apply(journal)
            crossed.set()

    task = asyncio.create_task(consume())
    await started.wait()
    await crossed.wait()  # the "started" event has reached the caller's journal
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert cancelled.is_set()  # the tool was stopped, not left running
    [call] = journal.cancel_unfinished()
    assert (call.name, call.status) == ("slow", ToolCallStatus.CANCELLED)
