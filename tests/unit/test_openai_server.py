"""The OpenAI-compatible router over a fake streaming engine, through FastAPI in-process: the
request shape it accepts, what it hands the engine, its responses, SSE and errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from whatsray.llm.openai_request import parse_chat_request
from whatsray.llm.openai_server import EngineBackend, openai_router
from whatsray.llm.protocol import (
    ChatMessage,
    ChatReply,
    LLMBadRequest,
    LLMContextTooLong,
    LLMUnavailable,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Usage,
)

MODEL = "smol"


@dataclass(frozen=True)
class Chunk:
    text: str
    finish_reason: str | None = None
    usage: Usage | None = None


class FakeEngine:
    """Echoes the last message; "call" asks for a tool call, "long" is too long, "down" fails.
    Records what each call received."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.running = 0
        self.peak = 0

    def _check(self, messages: Sequence[ChatMessage]) -> str:
        text = messages[-1].content
        if text == "long":
            raise LLMContextTooLong("the prompt is longer than the context")
        if text == "down":
            raise LLMUnavailable("the engine died")
        return text

    async def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatReply:
        self.calls.append({"messages": list(messages), **kwargs})
        text = self._check(messages)
        self.running += 1
        self.peak = max(self.peak, self.running)
        await asyncio.sleep(0.05)
        self.running -= 1
        usage = Usage(prompt_tokens=5, completion_tokens=2)
        tools: Sequence[ToolSpec] | None = kwargs.get("tools")
        if text == "call" and tools:
            call = ToolCall(id="call_1", name=tools[0].name, arguments_json='{"city": "Oslo"}')
            return ChatReply(tool_calls=(call,), finish_reason="tool_calls", usage=usage)
        return ChatReply(content=f"echo: {text}", finish_reason="stop", usage=usage)

    async def stream_chunks(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> AsyncIterator[Chunk]:
        self.calls.append({"messages": list(messages), "stream": True, **kwargs})
        text = self._check(messages)
        yield Chunk("echo")
        yield Chunk(": ")
        yield Chunk(text, "stop", Usage(prompt_tokens=5, completion_tokens=3))


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def client(engine: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.include_router(openai_router(EngineBackend(engine, MODEL)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://llm") as http:
        yield http


def user(text: str, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


async def test_models_lists_the_served_model(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/models")
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == [MODEL]


async def test_a_chat_completion_in_openais_shape(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=user("hi", model=MODEL))
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    assert data["model"] == MODEL
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "echo: hi"}
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}


async def test_the_engine_gets_every_option(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    body = {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
        ],
        "max_completion_tokens": 9,
        "max_tokens": 99,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": "END",
        "seed": 3,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
        "user": "ignored",
    }
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    call = engine.calls[0]
    assert call["messages"] == [ChatMessage.system("Be brief."), ChatMessage.user("ab")]
    assert (call["max_tokens"], call["temperature"], call["top_p"]) == (9, 0.2, 0.9)
    assert (call["stop"], call["seed"], call["response_schema"]) == (["END"], 3, schema)
    assert call["tools"] is None


async def test_json_object_format_asks_for_any_object(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    body = user("x", response_format={"type": "json_object"})
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    assert engine.calls[0]["response_schema"] == {"type": "object"}


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME_TOOL = {"type": "function", "function": {"name": "get_time"}}


async def test_tool_calls_come_back_in_openais_shape(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    body = user("call", tools=[WEATHER_TOOL, TIME_TOOL], tool_choice="auto")
    data = (await client.post("/v1/chat/completions", json=body)).json()
    message = data["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        }
    ]
    assert data["choices"][0]["finish_reason"] == "tool_calls"
    assert [t.name for t in engine.calls[0]["tools"]] == ["get_weather", "get_time"]
    assert engine.calls[0]["tool_choice"] == "auto"


async def test_a_named_tool_choice_offers_that_tool_and_requires_it(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    body = user("x", tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=choice)
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    tool_choice: ToolChoice = engine.calls[0]["tool_choice"]
    assert tool_choice == "required"
    assert [t.name for t in engine.calls[0]["tools"]] == ["get_time"]


async def test_history_with_tool_calls_is_read(
    client: httpx.AsyncClient, engine: FakeEngine
) -> None:
    body = {
        "messages": [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Oslo"}},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c9", "content": "rain"},
        ]
    }
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
    assistant, tool = engine.calls[0]["messages"][1:]
    assert assistant.tool_calls == (
        ToolCall(id="c9", name="get_weather", arguments_json='{"city": "Oslo"}'),
    )
    assert (tool.role, tool.tool_call_id, tool.content) == ("tool", "c9", "rain")


async def _events(response: httpx.Response) -> list[str]:
    return [line.removeprefix("data: ") async for line in response.aiter_lines() if line]


async def test_a_stream_is_server_sent_events_ending_with_done(client: httpx.AsyncClient) -> None:
    body = user("hi", stream=True, stream_options={"include_usage": True})
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await _events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content", "") for d in deltas) == "echo: hi"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3


async def test_a_stream_with_tools_sends_the_call_whole(client: httpx.AsyncClient) -> None:
    body = user("call", stream=True, tools=[WEATHER_TOOL])
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        events = await _events(response)
    chunks = [json.loads(e) for e in events[:-1]]
    calls = chunks[1]["choices"][0]["delta"]["tool_calls"]
    assert calls[0]["index"] == 0 and calls[0]["function"]["name"] == "get_weather"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({}, 400, "messages"),
        ({"messages": []}, 400, "messages"),
        (user("hi", n=3), 400, "n:"),
        (user("hi", temperature=-1), 400, "temperature"),
        (user("hi", top_p=0), 400, "top_p"),
        (user("hi", max_tokens=0), 400, "max_tokens"),
        ({"messages": [{"role": "robot", "content": "x"}]}, 400, "role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            400,
            "image_url",
        ),
        (user("hi", response_format={"type": "json_schema"}), 400, "json_schema"),
        (
            user("hi", tools=[WEATHER_TOOL], tool_choice={"function": {"name": "nope"}}),
            400,
            "nope",
        ),
        (user("hi", model="gpt-9"), 404, "gpt-9"),
        (user("long"), 400, "longer than the context"),
        (user("down"), 503, "died"),
        (user("long", stream=True), 400, "longer than the context"),
        (user("down", stream=True), 503, "died"),
        ([1, 2], 400, "JSON object"),
    ],
)
async def test_errors_have_openais_shape_and_status(
    client: httpx.AsyncClient, body: Any, status: int, words: str
) -> None:
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"]
    assert error["type"] == ("invalid_request_error" if status < 500 else "server_error")
    assert error["code"] == ("model_not_found" if status == 404 else None)


async def test_a_body_that_is_not_json_is_a_bad_request(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", content=b"{oops")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]["message"]


async def test_requests_are_not_serialized(client: httpx.AsyncClient, engine: FakeEngine) -> None:
    responses = await asyncio.gather(
        *(client.post("/v1/chat/completions", json=user(f"m{n}")) for n in range(10))
    )
    assert all(r.status_code == 200 for r in responses)
    assert engine.peak == 10  # every request was in the engine at once


def test_parse_chat_request_refuses_with_the_field_named() -> None:
    with pytest.raises(LLMBadRequest, match="messages"):
        parse_chat_request({"messages": "hello"})
    request = parse_chat_request(user("hi", stop=["a", "b"], max_tokens=5))
    assert request.stop_sequences() == ["a", "b"] and request.reply_token_limit() == 5
    assert request.engine_tool_choice() is None and request.response_schema() is None
