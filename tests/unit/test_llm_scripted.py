"""ScriptedEngine: scripted replies, responders, injected failures and delays, call records."""

from __future__ import annotations

import asyncio

import pytest

from whatsray.llm import (
    ChatMessage,
    ChatReply,
    KeywordRules,
    LLMTimeout,
    LLMUnavailable,
    ScriptedEngine,
    ScriptExhausted,
    ToolCall,
    ToolSpec,
    Usage,
    echo,
)

HI = [ChatMessage.user("hi")]


async def test_replies_in_order_then_exhausted():
    engine = ScriptedEngine(["one", "two"])
    assert (await engine.chat(HI)).content == "one"
    assert (await engine.chat(HI)).content == "two"
    with pytest.raises(ScriptExhausted, match="call 3 but only 2"):
        await engine.chat(HI)
    assert engine.call_count == 3


async def test_cycle_starts_over():
    engine = ScriptedEngine(["a", "b"], cycle=True)
    contents = [(await engine.chat(HI)).content for _ in range(5)]
    assert contents == ["a", "b", "a", "b", "a"]


async def test_empty_script_is_exhausted_at_once_not_echo():
    engine = ScriptedEngine([])
    with pytest.raises(ScriptExhausted):
        await engine.chat(HI)


async def test_reply_fields_are_filled_in():
    engine = ScriptedEngine(["three word answer"], name="fake", model="m1")
    reply = await engine.chat([ChatMessage.system("be nice"), ChatMessage.user("hello there")])
    assert reply.engine == "fake"
    assert reply.model == "m1"
    assert reply.finish_reason == "stop"
    assert reply.usage == Usage(prompt_tokens=4, completion_tokens=3)  # words


async def test_a_full_reply_with_tool_calls_is_kept():
    call = ToolCall(id="c1", name="lookup", arguments_json='{"q": "x"}')
    scripted = ChatReply(content="", tool_calls=(call,), usage=Usage(prompt_tokens=9))
    engine = ScriptedEngine([scripted])
    reply = await engine.chat(HI)
    assert reply.tool_calls == (call,)
    assert reply.finish_reason == "tool_calls"
    assert reply.usage == Usage(prompt_tokens=9)  # given usage is not replaced


async def test_config_form_reply_with_tool_calls():
    engine = ScriptedEngine(
        [{"content": "", "tool_calls": [{"name": "remind", "arguments": {"in": "5m"}}]}]
    )
    reply = await engine.chat(HI)
    assert reply.tool_calls == (
        ToolCall(id="call_1", name="remind", arguments_json='{"in": "5m"}'),
    )


async def test_an_exception_in_the_script_is_raised():
    engine = ScriptedEngine(["ok", LLMUnavailable("down"), "back"])
    assert (await engine.chat(HI)).content == "ok"
    with pytest.raises(LLMUnavailable, match="down"):
        await engine.chat(HI)
    assert (await engine.chat(HI)).content == "back"


async def test_default_is_echo_of_the_pending_user_messages():
    engine = ScriptedEngine()
    history = [
        ChatMessage.system("sys"),
        ChatMessage.user("old"),
        ChatMessage.assistant("old answer"),
        ChatMessage.user("one"),
        ChatMessage.user("two"),
    ]
    reply = await engine.chat(history)
    assert reply.content == "echo: one\ntwo"


async def test_echo_prefix():
    engine = ScriptedEngine(responder=echo(prefix=">> "))
    assert (await engine.chat(HI)).content == ">> hi"


async def test_keyword_rules_first_match_wins_else_default():
    rules = KeywordRules([(r"\bhours?\b", "9 to 5"), ("price|cost", "10 USD")], default="?")
    engine = ScriptedEngine(responder=rules)
    assert (await engine.chat([ChatMessage.user("Opening HOURS?")])).content == "9 to 5"
    assert (await engine.chat([ChatMessage.user("what does it cost")])).content == "10 USD"
    assert (await engine.chat([ChatMessage.user("hello")])).content == "?"


async def test_async_responder():
    async def respond(messages):
        await asyncio.sleep(0)
        return ChatReply(content=f"{len(messages)} messages")

    engine = ScriptedEngine(responder=respond)
    assert (await engine.chat(HI * 3)).content == "3 messages"


def test_replies_and_responder_are_exclusive():
    with pytest.raises(ValueError, match="not both"):
        ScriptedEngine(["x"], responder=echo())


async def test_fail_on_the_nth_call():
    engine = ScriptedEngine(["a", "b", "c"], fail_on={2: LLMTimeout("slow")})
    assert (await engine.chat(HI)).content == "a"
    with pytest.raises(LLMTimeout):
        await engine.chat(HI)
    # the failed call consumed its number, not a reply: call 3 gets reply 3
    assert (await engine.chat(HI)).content == "c"


async def test_fail_call_later():
    engine = ScriptedEngine()
    engine.fail_call(1, RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        await engine.chat(HI)
    assert (await engine.chat(HI)).content == "echo: hi"


async def test_delay_on_an_event_holds_the_call_in_flight():
    gate = asyncio.Event()
    engine = ScriptedEngine(["slow", "fast"], delay_on={1: gate})
    first = asyncio.create_task(engine.chat(HI))
    await engine.wait_for_calls(1)
    await asyncio.sleep(0)
    assert engine.in_flight == 1
    assert not first.done()
    assert (await engine.chat(HI)).content == "fast"  # other calls are not blocked
    gate.set()
    assert (await first).content == "slow"
    assert engine.in_flight == 0


async def test_delay_in_seconds_uses_the_injected_sleep():
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    engine = ScriptedEngine(sleep=fake_sleep)
    engine.delay_call(1, 30.0)
    assert (await engine.chat(HI)).content == "echo: hi"
    assert slept == [30.0]


async def test_a_delay_longer_than_the_call_timeout_is_a_timeout():
    engine = ScriptedEngine(delay_on={1: asyncio.Event()})  # never set
    with pytest.raises(LLMTimeout):
        await engine.chat(HI, timeout_s=0.01)
    assert engine.in_flight == 0


async def test_a_cancelled_call_is_recorded_and_leaves_no_call_in_flight():
    engine = ScriptedEngine(delay_on={1: asyncio.Event()})
    task = asyncio.create_task(engine.chat(HI))
    await engine.wait_for_calls(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.in_flight == 0
    assert engine.call_count == 1


async def test_every_call_is_recorded():
    tool = ToolSpec(name="t")
    engine = ScriptedEngine(["x", "y"])
    await engine.chat(HI, max_tokens=5, temperature=0.1, tools=[tool], timeout_s=3.0)
    await engine.chat([ChatMessage.user("again")])
    first, second = engine.calls
    assert first.number == 1
    assert first.messages == tuple(HI)
    assert (first.max_tokens, first.temperature, first.tools, first.timeout_s) == (
        5,
        0.1,
        (tool,),
        3.0,
    )
    assert second.number == 2
    assert second.messages[0].content == "again"
    assert second.tools == ()
    assert (second.tool_choice, second.response_schema) == (None, None)


async def test_tool_choice_and_response_schema_are_recorded_not_enforced():
    """The script decides the answer, so tests can hand callers invalid structured output."""
    schema = {"type": "object", "properties": {"agent": {"enum": ["faq"]}}, "required": ["agent"]}
    engine = ScriptedEngine(["not json at all"])
    reply = await engine.chat(
        HI, tools=[ToolSpec(name="t")], tool_choice="required", response_schema=schema
    )
    assert reply.content == "not json at all"
    (call,) = engine.calls
    assert (call.tool_choice, call.response_schema) == ("required", schema)


async def test_closed_engine_is_unavailable():
    engine = ScriptedEngine()
    await engine.close()
    with pytest.raises(LLMUnavailable):
        await engine.chat(HI)
