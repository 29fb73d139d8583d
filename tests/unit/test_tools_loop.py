"""The agent's tool-calling loop with the scripted engine: steps, bounds, recovery, the journal."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest
from pydantic import Field

from tests.unit.tools_harness import CHAT, FakePlatform, calls, make_agent, message, turn
from whatsray.agents import AgentOutcome
from whatsray.llm import ChatMessage, ChatReply, LLMUnavailable, ScriptedEngine, ToolCall
from whatsray.session.turns import ToolCallJournal, ToolCallStatus
from whatsray.tools import BUILTIN_TOOLS, Tool, ToolArguments, ToolContext


def tool_messages(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    return [json.loads(m.content) for m in messages if m.role == "tool"]


async def test_two_tool_steps_then_a_reply() -> None:
    platform = FakePlatform()
    platform.store.messages[str(CHAT)] = [message(CHAT, 1, "order 4711 is late")]
    engine = ScriptedEngine(
        [
            calls(("get_messages", {"limit": 5})),
            calls(("send_message", {"text": "Checking order 4711 now."})),
            "It will arrive tomorrow.",
        ]
    )
    journal = ToolCallJournal()
    result = await make_agent(engine, platform).run(turn("where is my order?"), journal)

    assert result.outcome is AgentOutcome.OK
    assert result.reply_parts == ("It will arrive tomorrow.",)
    assert result.engine_calls == 3 and engine.call_count == 3
    assert [(c.name, c.status) for c in result.tool_calls] == [
        ("get_messages", ToolCallStatus.OK),
        ("send_message", ToolCallStatus.OK),
    ]
    assert journal.calls == result.tool_calls  # reported as they ran
    # The model saw each result, after its own tool-call message, with matching ids.
    second = engine.calls[1].messages
    assert second[-2].role == "assistant" and second[-2].tool_calls[0].name == "get_messages"
    assert second[-1].tool_call_id == second[-2].tool_calls[0].id
    assert tool_messages(second)[0]["messages"][0]["text"] == "order 4711 is late"
    # Every call offered the tools; the send went to this chat, id derived from the turn.
    assert all(c.tools for c in engine.calls)
    assert [t.name for t in engine.calls[0].tools] == [
        "get_messages",
        "send_message",
        "handoff_to_human",
    ]
    [item] = platform.outbox.dispatched
    assert (item.outbound_id, item.chat) == ("turn-1:tool:0", str(CHAT))
    assert platform.sent_to(CHAT) == ["Checking order 4711 now."]
    assert result.usage.total_tokens > 0


async def test_call_ids_reused_by_the_model_are_made_unique_in_the_turn() -> None:
    engine = ScriptedEngine(
        [calls(("get_messages", {})), calls(("get_messages", {"limit": 2})), "ok"]
    )  # the scripted engine names both calls `call_1`, as small models do
    journal = ToolCallJournal()
    result = await make_agent(engine, FakePlatform()).run(turn("hi"), journal)
    ids = [c.call_id for c in result.tool_calls]
    assert len(set(ids)) == 2 and len(journal) == 2
    last = engine.calls[2].messages
    assert [m.tool_call_id for m in last if m.role == "tool"] == ids


async def test_malformed_json_goes_back_to_the_model_once_then_it_replies() -> None:
    bad = {"tool_calls": [{"name": "get_messages", "arguments": '{"limit": 5'}]}
    engine = ScriptedEngine([bad, "Sorry, here is my answer."])
    result = await make_agent(engine, FakePlatform()).run(turn("hi"))
    assert result.reply_parts == ("Sorry, here is my answer.",)
    [call] = result.tool_calls
    assert call.status is ToolCallStatus.ERROR
    assert "not valid JSON" in json.loads(call.result or "")["error"]
    assert engine.calls[1].tools  # one mistake: the tools are still offered
    assert "not valid JSON" in tool_messages(engine.calls[1].messages)[0]["error"]


async def test_a_second_bad_call_ends_tool_use_with_a_plain_reply() -> None:
    engine = ScriptedEngine(
        [
            calls(("get_messages", {"limit": "many"})),  # breaks the schema
            calls(("launch_rockets", {})),  # unknown tool
            "Here you go, without tools.",
        ]
    )
    result = await make_agent(engine, FakePlatform()).run(turn("hi"))
    assert result.reply_parts == ("Here you go, without tools.",)
    assert result.tools_stopped == "bad_calls"
    errors = [json.loads(c.result or "")["error"] for c in result.tool_calls]
    assert errors[0].startswith("invalid arguments: limit:")
    assert errors[1].startswith("unknown tool 'launch_rockets'; available tools: get_messages")
    last = engine.calls[2]
    assert last.tools == () and last.tool_choice == "none"


async def test_unknown_tool_or_a_tool_the_agent_does_not_list() -> None:
    # search_contacts exists, but this agent does not list it: the same as unknown.
    engine = ScriptedEngine([calls(("search_contacts", {"query": "bob"})), "ok"])
    result = await make_agent(engine, FakePlatform()).run(turn("find bob"))
    [call] = result.tool_calls
    assert json.loads(call.result or "")["error"].startswith("unknown tool 'search_contacts'")
    assert result.reply_parts == ("ok",)


def always_calls_tools(messages: Sequence[ChatMessage]) -> ChatReply:
    """A model that never stops calling tools (it ignores tool_choice, like a bad engine)."""
    return ChatReply(tool_calls=(ToolCall(id="c", name="get_messages", arguments_json="{}"),))


async def test_the_step_limit_ends_tool_use() -> None:
    engine = ScriptedEngine(responder=always_calls_tools)
    result = await make_agent(engine, FakePlatform(), max_tool_steps=2).run(turn("hi"))
    assert engine.call_count == 3
    assert [bool(c.tools) for c in engine.calls] == [True, True, False]
    assert engine.calls[2].tool_choice == "none"
    assert result.tools_stopped == "steps"
    assert len(result.tool_calls) == 2
    # The closing reply had no text (only calls it was told not to make): the fallback text.
    assert result.outcome is AgentOutcome.EMPTY_REPLY


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TickArgs(ToolArguments):
    seconds: float = Field(ge=0)


async def test_the_turn_time_budget_ends_tool_use() -> None:
    clock = Clock()

    async def tick(args: TickArgs, ctx: ToolContext) -> str:
        clock.now += args.seconds  # the tool "takes" this long on the agent's clock
        return "done"

    registry = BUILTIN_TOOLS.with_tools(
        Tool("tick", "Wait a while.", TickArgs, tick)  # type: ignore[arg-type]
    )

    def respond(messages: Sequence[ChatMessage]) -> dict[str, Any]:
        return calls(("tick", {"seconds": 10}))

    engine = ScriptedEngine(responder=respond)  # type: ignore[arg-type]
    agent = make_agent(
        engine, registry=registry, tools=["tick"], turn_timeout_s=15, monotonic=clock
    )
    result = await agent.run(turn("hi"))
    # 10 s, then 20 s: past the 15 s budget after the second step, well before the step limit.
    assert [bool(c.tools) for c in engine.calls] == [True, True, False]
    assert result.tools_stopped == "time"
    assert len(result.tool_calls) == 2


async def test_a_model_that_never_calls_tools_just_answers() -> None:
    engine = ScriptedEngine(["Hello! How can I help?"])
    result = await make_agent(engine, FakePlatform()).run(turn("hi"))
    assert result.reply_parts == ("Hello! How can I help?",)
    assert result.tool_calls == () and result.engine_calls == 1
    assert engine.calls[0].tools  # offered, not used


async def test_an_agent_without_tools_is_called_as_before() -> None:
    engine = ScriptedEngine(["hi"])
    await make_agent(engine, tools=[]).run(turn("hi"))
    assert engine.calls[0].tools == () and engine.calls[0].tool_choice is None


class NoArgs(ToolArguments):
    pass


async def test_a_tool_that_raises_becomes_an_error_result() -> None:
    async def explode(args: NoArgs, ctx: ToolContext) -> str:
        raise RuntimeError("boom")

    async def hang(args: NoArgs, ctx: ToolContext) -> str:
        await asyncio.Event().wait()
        return "never"

    registry = BUILTIN_TOOLS.with_tools(
        Tool("explode", "Fails.", NoArgs, explode),  # type: ignore[arg-type]
        Tool("hang", "Never answers.", NoArgs, hang),  # type: ignore[arg-type]
    )
    engine = ScriptedEngine([calls(("explode", {}), ("hang", {})), "Something broke, sorry."])
    agent = make_agent(engine, registry=registry, tools=["explode", "hang"], tool_timeout_s=0.05)
    result = await agent.run(turn("hi"))
    assert result.outcome is AgentOutcome.OK
    assert result.reply_parts == ("Something broke, sorry.",)
    errors = [json.loads(c.result or "")["error"] for c in result.tool_calls]
    assert errors == ["the tool failed (RuntimeError: boom)", "no result within 0.05 s"]
    assert engine.calls[1].tools  # a failing tool is not the model's mistake


async def test_the_closing_reply_failing_gives_the_apology_with_the_calls_kept() -> None:
    engine = ScriptedEngine(
        [calls(("get_messages", {})), calls(("get_messages", {}))],
        fail_on={3: LLMUnavailable("down")},
    )
    result = await make_agent(engine, FakePlatform(), max_tool_steps=2).run(turn("hi"))
    assert result.outcome is AgentOutcome.ENGINE_ERROR
    assert result.error_type == "LLMUnavailable"
    assert len(result.tool_calls) == 2


async def test_a_cancelled_turn_leaves_its_running_call_in_the_journal() -> None:
    started = asyncio.Event()

    async def slow(args: NoArgs, ctx: ToolContext) -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    registry = BUILTIN_TOOLS.with_tools(Tool("slow", "Slow.", NoArgs, slow))  # type: ignore[arg-type]
    engine = ScriptedEngine([calls(("slow", {}))])
    journal = ToolCallJournal()
    task = asyncio.create_task(
        make_agent(engine, registry=registry, tools=["slow"]).run(turn("hi"), journal)
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [running] = journal.calls
    assert running.status is ToolCallStatus.RUNNING
    [cancelled] = journal.cancel_unfinished()
    assert (cancelled.result, cancelled.status) == ("cancelled", ToolCallStatus.CANCELLED)


async def test_an_interrupted_attempts_calls_are_shown_to_the_rerun() -> None:
    from whatsray.session.turns import ToolCall as SessionToolCall

    earlier = (
        SessionToolCall("call_1", "send_message", '{"text": "On it"}', '{"sent": true}', "ok"),  # type: ignore[arg-type]
        SessionToolCall("call_2", "get_messages", "{}", "cancelled", ToolCallStatus.CANCELLED),
    )
    engine = ScriptedEngine([calls(("get_messages", {})), "Done."])
    await make_agent(engine, FakePlatform()).run(
        turn("a", "b", earlier_tool_calls=earlier), ToolCallJournal()
    )
    first = engine.calls[0].messages
    assistant = [m for m in first if m.tool_calls]
    assert [c.name for c in assistant[0].tool_calls] == ["send_message", "get_messages"]
    results = [m for m in first if m.role == "tool"]
    assert results[0].content == '{"sent": true}'
    assert json.loads(results[1].content)["error"].startswith("cancelled")
    # A new call does not reuse an id of the earlier ones.
    second = engine.calls[1].messages
    ids = [c.id for m in second for c in m.tool_calls]
    assert len(ids) == len(set(ids)) == 3
