"""One agent turn with the scripted engine: the prompt, the FAQ path, failures, and reply parts."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from whatsray.agents import (
    Agent,
    AgentOutcome,
    AgentTurnRequest,
    load_agents_config,
    parse_agents_config,
)
from whatsray.agents.config import AgentSpec
from whatsray.agents.replies import DEFAULT_APOLOGY
from whatsray.llm import (
    ChatMessage,
    ChatReply,
    LLMTimeout,
    LLMUnavailable,
    ScriptedEngine,
    ToolSpec,
    Usage,
)
from whatsray.whatsapp.events import MessageEvent, MessageType
from whatsray.whatsapp.message_content import ImageContent, TextContent

SHIPPED = Path(__file__).resolve().parents[2] / "configs" / "agents.yaml"
CHAT = "106540352242922:16505551234"


@dataclass(frozen=True)
class Said:
    """A history message, shaped like the session's `HistoryMessage`."""

    role: str
    text: str
    at: float = 0.0


def spec(**fields: Any) -> AgentSpec:
    body = {
        "name": "assistant",
        "description": "d",
        "system_prompt": "You are helpful.",
        "engine": "test",
        **fields,
    }
    data = {
        "engines": {"test": {"engine": "scripted"}},
        "router": {"default_agent": "assistant"},
        "agents": [body],
    }
    return parse_agents_config(data).agent("assistant")


def turn(*inputs: str, history: Sequence[Said] = ()) -> AgentTurnRequest:
    return AgentTurnRequest("turn-1", CHAT, inputs, tuple(history))


@pytest.fixture(scope="module")
def faq_spec() -> AgentSpec:
    return load_agents_config(SHIPPED).agent("faq")


# --- the prompt ---------------------------------------------------------------------------------


async def test_history_window_is_bounded_ordered_and_mapped() -> None:
    engine = ScriptedEngine(["ok"])
    agent = Agent(spec(history_messages=4), engine)
    history = [Said("user" if i % 2 == 0 else "assistant", f"m{i}") for i in range(10)]
    result = await agent.run(turn("now", history=history))
    assert result.outcome is AgentOutcome.OK
    messages = engine.calls[0].messages
    assert [(m.role, m.content) for m in messages] == [
        ("system", "You are helpful."),
        ("user", "m6"),
        ("assistant", "m7"),
        ("user", "m8"),
        ("assistant", "m9"),
        ("user", "now"),
    ]


async def test_default_window_is_50_and_zero_means_none() -> None:
    history = [Said("user", f"m{i}") for i in range(120)]
    engine = ScriptedEngine(["ok", "ok"])
    await Agent(spec(), engine).run(turn("now", history=history))
    window = engine.calls[0].messages[1:-1]
    assert [m.content for m in window] == [f"m{i}" for i in range(70, 120)]
    await Agent(spec(history_messages=0), engine).run(turn("now", history=history))
    assert [m.role for m in engine.calls[1].messages] == ["system", "user"]


async def test_history_skips_blank_and_unknown_roles() -> None:
    engine = ScriptedEngine(["ok"])
    history = [
        Said("user", "a"),
        Said("system", "sneaky"),
        Said("assistant", "  "),
        Said("tool", "t"),
    ]
    await Agent(spec(), engine).run(turn("b", history=history))
    assert [(m.role, m.content) for m in engine.calls[0].messages[1:]] == [
        ("user", "a"),
        ("user", "b"),
    ]


async def test_coalesced_inputs_are_separate_user_messages_in_order() -> None:
    engine = ScriptedEngine()  # echo
    result = await Agent(spec(), engine).run(turn("hi", "are you there?", "hello??"))
    users = [m.content for m in engine.calls[0].messages if m.role == "user"]
    assert users == ["hi", "are you there?", "hello??"]
    assert result.reply_parts == ("echo: hi\nare you there?\nhello??",)


async def test_engine_options_come_from_the_spec() -> None:
    engine = ScriptedEngine(["ok"])
    await Agent(spec(max_tokens=77, temperature=0.3, timeout_s=9), engine).run(turn("x"))
    call = engine.calls[0]
    assert (call.max_tokens, call.temperature, call.timeout_s) == (77, 0.3, 9)
    assert call.tools == ()


async def test_result_carries_usage_engine_model_and_latency() -> None:
    reply = ChatReply(
        content="Sure.", usage=Usage(prompt_tokens=12, completion_tokens=3), model="m1"
    )
    ticks = iter([10.0, 10.25])
    agent = Agent(spec(), ScriptedEngine([reply], name="eng"), monotonic=lambda: next(ticks))
    result = await agent.run(turn("x"))
    assert result.reply_parts == ("Sure.",)
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (12, 3)
    assert (result.engine, result.model, result.finish_reason) == ("eng", "m1", "stop")
    assert result.latency_ms == 250.0
    assert result.called_engine


def test_request_from_events_uses_words_or_the_media_type() -> None:
    events = [
        MessageEvent(idempotency_key="a", type=MessageType.TEXT, content=TextContent(body="hi")),
        MessageEvent(idempotency_key="b", type=MessageType.IMAGE, content=ImageContent()),
        MessageEvent(
            idempotency_key="c", type=MessageType.IMAGE, content=ImageContent(caption="my bike")
        ),
    ]
    request = AgentTurnRequest.from_events("t", CHAT, events, [Said("user", "before")])
    assert request.inputs == ("hi", "[image]", "my bike")
    assert request.history == (Said("user", "before"),)


# --- commands and greetings ----------------------------------------------------------------------


async def test_bare_command_gets_the_greeting_without_the_engine() -> None:
    engine = ScriptedEngine([])
    agent = Agent(spec(routing={"commands": ["/help"]}, greeting="Ask me anything."), engine)
    for text in ("/help", "/HELP  ", "/agent assistant"):
        result = await agent.run(turn(text))
        assert (result.reply_parts, result.outcome) == (
            ("Ask me anything.",),
            AgentOutcome.GREETING,
        )
    assert engine.call_count == 0
    assert not result.called_engine


async def test_command_is_stripped_from_the_question() -> None:
    engine = ScriptedEngine()
    agent = Agent(spec(routing={"commands": ["/help"]}), engine)
    await agent.run(turn("/help how do I start?", "/agent assistant and then?", "/other stays"))
    users = [m.content for m in engine.calls[0].messages if m.role == "user"]
    assert users == ["how do I start?", "and then?", "/other stays"]


# --- the FAQ agent -----------------------------------------------------------------------------


async def test_faq_known_question_gives_the_right_entry_to_the_engine(faq_spec: AgentSpec) -> None:
    engine = ScriptedEngine(["We open at 9:00 on Saturdays."])
    result = await Agent(faq_spec, engine).run(turn("What time do you open on Saturday?"))
    assert result.outcome is AgentOutcome.OK
    assert result.reply_parts == ("We open at 9:00 on Saturdays.",)
    assert result.knowledge_ids[0] == "when-are-you-open"
    system = engine.calls[0].messages[0]
    assert system.role == "system"
    assert system.content.startswith(faq_spec.system_prompt)
    assert "Saturday 9:00 to 17:00" in system.content  # the entry's answer is in the context
    assert "[when-are-you-open]" in system.content
    assert "say that you don't know" in system.content
    assert "Kanalstraße" not in system.content  # an unrelated entry is not
    assert engine.calls[0].messages[-1].content == "What time do you open on Saturday?"


async def test_faq_unknown_question_answers_dont_know_without_the_engine(
    faq_spec: AgentSpec,
) -> None:
    engine = ScriptedEngine([])
    result = await Agent(faq_spec, engine).run(turn("What's the capital of France?"))
    assert faq_spec.knowledge is not None
    assert result.reply_parts == (faq_spec.knowledge.unknown_reply,)
    assert "person from our team" in result.reply_parts[0]
    assert result.outcome is AgentOutcome.NO_KNOWLEDGE
    assert engine.call_count == 0
    assert not result.called_engine


async def test_faq_searches_all_coalesced_inputs(faq_spec: AgentSpec) -> None:
    engine = ScriptedEngine(["ok"])
    result = await Agent(faq_spec, engine).run(turn("hello", "do you deliver to Potsdam?"))
    assert result.knowledge_ids[0] == "do-you-deliver"


async def test_faq_slash_command_alone_greets(faq_spec: AgentSpec) -> None:
    result = await Agent(faq_spec, ScriptedEngine([])).run(turn("/faq"))
    assert result.outcome is AgentOutcome.GREETING
    assert "opening hours" in result.reply_parts[0]


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", [LLMUnavailable("connection refused"), LLMTimeout("slow"), RuntimeError("engine bug")]
)
async def test_engine_failure_gives_the_apology_and_never_raises(error: Exception) -> None:
    engine = ScriptedEngine(["never"], fail_on={1: error})
    result = await Agent(spec(), engine).run(turn("hi"))
    assert result.reply_parts == (DEFAULT_APOLOGY,)
    assert result.outcome is AgentOutcome.ENGINE_ERROR
    assert result.error_type == type(error).__name__
    assert result.error is not None and str(error) in result.error
    assert result.called_engine


async def test_configured_apology(faq_spec: AgentSpec) -> None:
    engine = ScriptedEngine(["x"], fail_on={1: LLMUnavailable("down")})
    agent = Agent(spec(apology="Oops, back soon."), engine)
    assert (await agent.run(turn("hi"))).reply_parts == ("Oops, back soon.",)


class HangingEngine:
    """Never answers and ignores `timeout_s`: the agent's own timeout must end the turn."""

    name = "hanging"

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tools: Sequence[ToolSpec] | None = None,
        timeout_s: float | None = None,
    ) -> ChatReply:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        return None


async def test_a_hanging_engine_times_out_into_the_apology() -> None:
    result = await Agent(spec(timeout_s=0.05), HangingEngine()).run(turn("hi"))
    assert result.outcome is AgentOutcome.ENGINE_ERROR
    assert result.error_type == "TimeoutError"
    assert result.error == "no answer within 0.05 s"
    assert result.engine == "hanging"
    assert result.reply_parts == (DEFAULT_APOLOGY,)


async def test_cancelling_a_turn_is_not_swallowed() -> None:
    """An `interrupt` cancels the running turn: it must really stop, not answer an apology."""
    gate = asyncio.Event()
    engine = ScriptedEngine(["late"], delay_on={1: gate})
    task = asyncio.create_task(Agent(spec(), engine).run(turn("hi")))
    await engine.wait_for_calls(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("content", ["", "   \n  "])
async def test_empty_model_output_gets_the_fallback_text(content: str) -> None:
    result = await Agent(
        spec(empty_reply="Could you say that differently?"), ScriptedEngine([content])
    ).run(turn("hi"))
    assert result.reply_parts == ("Could you say that differently?",)
    assert result.outcome is AgentOutcome.EMPTY_REPLY


# --- long replies ----------------------------------------------------------------------------


async def test_long_reply_is_split_into_whatsapp_parts() -> None:
    paragraphs = [f"Part {i}: " + "lorem ipsum dolor sit amet. " * 60 for i in range(8)]
    long_text = "\n\n".join(p.strip() for p in paragraphs)  # ~13,500 chars
    result = await Agent(spec(), ScriptedEngine([long_text])).run(turn("tell me everything"))
    assert len(result.reply_parts) >= 4
    assert all(0 < len(p) <= 4096 for p in result.reply_parts)
    assert " ".join(result.reply_parts).split() == long_text.split()
    assert result.outcome is AgentOutcome.OK


async def test_requests_and_results_survive_pickling() -> None:
    """Ray pickles them between the session host and the agent pool."""
    request = turn("hi", history=[Said("user", "before")])
    assert pickle.loads(pickle.dumps(request)) == request
    failed = await Agent(spec(), ScriptedEngine([], fail_on={1: LLMUnavailable("x")})).run(request)
    ok = await Agent(spec(), ScriptedEngine(["fine"])).run(request)
    for result in (failed, ok):
        assert pickle.loads(pickle.dumps(result)) == result
