"""The engine protocol's values and errors: frozen, picklable, and the engines satisfy it."""

from __future__ import annotations

import inspect
import pickle
from pathlib import Path

import httpx
import pydantic
import pytest

from whatsray.llm import (
    ALL_LLM_ERRORS,
    ChatEngine,
    ChatMessage,
    ChatReply,
    LlamaCppEngine,
    LLMBadRequest,
    LLMBadResponse,
    LLMConfigError,
    LLMContextTooLong,
    LLMError,
    LLMRateLimited,
    LLMTimeout,
    LLMUnavailable,
    OpenAICompatibleEngine,
    ScriptedEngine,
    ScriptExhausted,
    ToolCall,
    ToolSpec,
    Usage,
)

TRANSIENT = {LLMUnavailable, LLMRateLimited, LLMTimeout}


@pytest.mark.parametrize("cls", [*ALL_LLM_ERRORS, ScriptExhausted])
def test_every_error_survives_pickle(cls):
    error = cls(
        "it broke", engine="openai", status_code=503, retry_after=2.5, details="upstream said no"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert (copy.message, copy.engine, copy.status_code, copy.retry_after, copy.details) == (
        "it broke",
        "openai",
        503,
        2.5,
        "upstream said no",
    )
    assert str(copy) == str(error)
    assert copy.is_transient == (cls in TRANSIENT)


def test_error_hierarchy():
    assert all(issubclass(cls, LLMError) for cls in ALL_LLM_ERRORS)
    assert issubclass(LLMRateLimited, LLMUnavailable)
    assert issubclass(LLMContextTooLong, LLMBadRequest)
    assert issubclass(LLMConfigError, ValueError)  # a config problem, for callers that catch those
    assert not LLMBadResponse.is_transient


def test_error_str_says_where_and_what():
    error = LLMUnavailable("no route", engine="ollama", status_code=502, details="gateway")
    assert str(error) == "[ollama] no route (HTTP 502) - gateway"
    assert str(LLMTimeout()) == "LLMTimeout"


def test_values_are_frozen_and_picklable():
    call = ToolCall(id="c1", name="lookup", arguments_json='{"q": 1}')
    values = [
        ChatMessage.system("s"),
        ChatMessage.user("u"),
        ChatMessage.assistant("", tool_calls=[call]),
        ChatMessage.tool("result", tool_call_id="c1", name="lookup"),
        ChatReply(
            content="x",
            tool_calls=(call,),
            finish_reason="stop",
            usage=Usage(prompt_tokens=3, completion_tokens=4),
            model="m",
            engine="e",
            latency_ms=1.5,
        ),
        ToolSpec(name="lookup", description="find", parameters={"type": "object"}),
    ]
    for value in values:
        assert pickle.loads(pickle.dumps(value)) == value
        first_field = next(iter(type(value).model_fields))
        with pytest.raises(pydantic.ValidationError, match="frozen"):
            setattr(value, first_field, "changed")


def test_message_constructors():
    assert ChatMessage.assistant("hi").tool_calls == ()
    tool = ChatMessage.tool("42", tool_call_id="c9")
    assert (tool.role, tool.tool_call_id, tool.name) == ("tool", "c9", None)
    with pytest.raises(pydantic.ValidationError):
        ChatMessage(role="robot", content="x")  # type: ignore[arg-type]


def test_usage_total_and_tool_spec_default_schema():
    assert Usage(prompt_tokens=3, completion_tokens=4).total_tokens == 7
    assert ToolSpec(name="t").parameters == {"type": "object", "properties": {}}


async def test_every_engine_satisfies_the_protocol(tmp_path: Path):
    async with httpx.AsyncClient() as http:
        engines = [
            ScriptedEngine(),
            OpenAICompatibleEngine(http, "http://x/v1", None, "m"),
            LlamaCppEngine(tmp_path / "m.gguf", llama_factory=lambda **kw: object()),  # type: ignore[arg-type,return-value]
        ]
        for engine in engines:
            assert isinstance(engine, ChatEngine)
            assert engine.name


@pytest.mark.parametrize("engine", [ScriptedEngine, OpenAICompatibleEngine, LlamaCppEngine])
def test_every_engine_takes_the_protocol_keywords(engine):
    """Same keyword arguments, same defaults: callers pass tool_choice and response_schema to
    any engine."""
    expected = inspect.signature(ChatEngine.chat).parameters
    actual = inspect.signature(engine.chat).parameters
    assert list(actual) == list(expected)
    for name, parameter in expected.items():
        assert actual[name].kind == parameter.kind
        assert actual[name].default == parameter.default
