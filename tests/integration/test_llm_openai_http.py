"""OpenAICompatibleEngine over real loopback HTTP (uvicorn) against the fake OpenAI server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.fake_openai import Complete, FakeOpenAI, Hang, Status
from tests.support.servers import free_port, serve_on_loopback
from whatsray.llm import (
    Backoff,
    ChatMessage,
    LLMBadRequest,
    LLMTimeout,
    LLMUnavailable,
    OpenAICompatibleEngine,
    ToolSpec,
    build_engine,
)

pytestmark = pytest.mark.integration

HI = [ChatMessage.user("hello over the wire")]
NO_WAIT = Backoff(initial_s=0.0, jitter=0.0)


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI()


@pytest.fixture
def base_url(fake: FakeOpenAI) -> Iterator[str]:
    with serve_on_loopback(fake.app) as url:
        yield f"{url}/v1"
        fake.release()  # let a hanging handler finish so that uvicorn can stop


async def test_completion_tools_and_retries_over_http(fake, base_url):
    fake.then(
        Status(500, "upstream exploded"),
        Complete(
            content=None,
            finish_reason="tool_calls",
            tool_calls=[
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        ),
        Status(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}),
        Complete(content="done", usage={"prompt_tokens": 30, "completion_tokens": 2}),
    )
    engine = build_engine(
        {
            "engine": "openai",
            "base_url": base_url,
            "model": "m",
            "api_key_env": "K",
            "backoff_initial_s": 0.0,
        },
        env={"K": "secret-key"},
    )
    try:
        first = await engine.chat(HI, tools=[ToolSpec(name="f")])
        second = await engine.chat(
            [*HI, ChatMessage.assistant(tool_calls=first.tool_calls), ChatMessage.tool("ok", "c1")]
        )
    finally:
        await engine.close()
    assert first.tool_calls[0].name == "f"
    assert second.content == "done"
    assert (second.usage.prompt_tokens, second.usage.completion_tokens) == (30, 2)
    assert fake.count == 4  # 500 and 429 were each retried once
    assert {h["authorization"] for h in fake.headers} == {"Bearer secret-key"}
    assert fake.requests[3]["messages"][-1] == {
        "role": "tool",
        "content": "ok",
        "tool_call_id": "c1",
    }


async def test_bad_request_over_http_is_not_retried(fake, base_url):
    fake.then(Status(400, {"error": {"message": "unknown model 'm'"}}))
    async with httpx.AsyncClient() as http:
        engine = OpenAICompatibleEngine(http, base_url, None, "m", backoff=NO_WAIT)
        with pytest.raises(LLMBadRequest, match="unknown model"):
            await engine.chat(HI)
    assert fake.count == 1


async def test_timeout_over_http_after_retries(fake, base_url):
    fake.then(Hang(), Hang())
    async with httpx.AsyncClient() as http:
        engine = OpenAICompatibleEngine(
            http, base_url, None, "m", timeout_s=0.1, max_retries=1, backoff=NO_WAIT
        )
        with pytest.raises(LLMTimeout):
            await engine.chat(HI)
    assert fake.count == 2


async def test_connection_refused_over_http():
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    async with httpx.AsyncClient() as http:
        engine = OpenAICompatibleEngine(http, dead, None, "m", max_retries=2, backoff=NO_WAIT)
        with pytest.raises(LLMUnavailable) as caught:
            await engine.chat(HI)
    assert caught.value.is_transient
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


async def test_structured_output_and_tool_choice_over_http(fake, base_url):
    schema = {
        "title": "route",
        "type": "object",
        "properties": {"agent": {"type": "string", "enum": ["faq", "support"]}},
        "required": ["agent"],
        "additionalProperties": False,
    }
    fake.then(Complete(content='{"agent": "support"}'), Complete(content="ok"))
    async with httpx.AsyncClient() as http:
        engine = OpenAICompatibleEngine(http, base_url, None, "m", backoff=NO_WAIT)
        routed = await engine.chat(HI, response_schema=schema, temperature=0.0)
        await engine.chat(HI, tools=[ToolSpec(name="f")], tool_choice="none")
    assert routed.content == '{"agent": "support"}'
    assert fake.requests[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "route", "schema": schema, "strict": True},
    }
    assert fake.requests[1]["tool_choice"] == "none"
    assert "response_format" not in fake.requests[1]
