"""OpenAICompatibleEngine against a fake OpenAI-compatible server, in-process (ASGITransport)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from random import Random

import httpx
import pytest
from pydantic import SecretStr

from tests.support.fake_openai import Complete, FakeOpenAI, Hang, Raw, Status
from tests.support.fake_time import FakeTime
from whatsray.llm import (
    Backoff,
    ChatMessage,
    LLMBadRequest,
    LLMBadResponse,
    LLMContextTooLong,
    LLMRateLimited,
    LLMTimeout,
    LLMUnavailable,
    OpenAICompatibleEngine,
    ToolCall,
    ToolSpec,
)
from whatsray.llm.openai_compatible import DEFAULT_BACKOFF
from whatsray.llm.openai_schema import reply_from_openai, response_format_for
from whatsray.retries import parse_retry_after

BASE_URL = "http://llm.test/v1"
HELLO = [ChatMessage.system("Be brief."), ChatMessage.user("hi there")]


@pytest.fixture
def fake() -> FakeOpenAI:
    return FakeOpenAI()


@pytest.fixture
async def http(fake: FakeOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as client:
        yield client


@pytest.fixture
def time_() -> FakeTime:
    return FakeTime()


def make_engine(
    http: httpx.AsyncClient, time_: FakeTime, *, api_key: str | None = "sk-test", **kwargs: object
) -> OpenAICompatibleEngine:
    options: dict = {
        "timeout_s": 5.0,
        "max_retries": 2,
        "backoff": Backoff(initial_s=0.5, max_s=8.0, jitter=0.0),
        "sleep": time_.sleep,
        "clock": time_.clock,
    }
    options.update(kwargs)
    return OpenAICompatibleEngine(
        http, BASE_URL, SecretStr(api_key) if api_key else None, "test-model", **options
    )


async def test_completion_with_usage(http, fake, time_):
    fake.then(Complete(content="Hello!", model="served-model"))
    engine = make_engine(http, time_)

    reply = await engine.chat(HELLO, max_tokens=32, temperature=0.2)

    assert reply.content == "Hello!"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (12, 3)
    assert reply.usage.total_tokens == 15
    assert reply.finish_reason == "stop"
    assert reply.model == "served-model"
    assert reply.engine == "openai"
    assert reply.tool_calls == ()
    assert fake.paths == ["/v1/chat/completions"]
    assert fake.requests == [
        {
            "model": "test-model",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi there"},
            ],
            "max_tokens": 32,
            "temperature": 0.2,
        }
    ]
    assert fake.headers[0]["authorization"] == "Bearer sk-test"
    assert time_.sleeps == []


async def test_no_api_key_sends_no_authorization(http, fake, time_):
    engine = make_engine(http, time_, api_key=None)
    reply = await engine.chat([ChatMessage.user("ping")])
    assert reply.content == "echo: ping"
    assert "authorization" not in fake.headers[0]


async def test_constructor_defaults_extra_body_and_token_field(http, fake, time_):
    engine = make_engine(
        http,
        time_,
        max_tokens=64,
        temperature=0.0,
        max_tokens_field="max_completion_tokens",
        extra_body={"top_p": 0.9, "model": "ignored"},
    )
    await engine.chat(HELLO)
    await engine.chat(HELLO, max_tokens=8, temperature=1.0)
    first, second = fake.requests
    assert first["model"] == "test-model"  # the engine's model wins over extra_body
    assert (first["max_completion_tokens"], first["temperature"], first["top_p"]) == (64, 0.0, 0.9)
    assert "max_tokens" not in first
    assert (second["max_completion_tokens"], second["temperature"]) == (8, 1.0)


async def test_tool_calls_round_trip(http, fake, time_):
    weather = ToolSpec(
        name="get_weather",
        description="Weather for a city",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}},
    )
    fake.then(
        Complete(
            content=None,
            finish_reason="tool_calls",
            tool_calls=[
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Lima"}'},
                }
            ],
        ),
        Complete(content="Sunny in Lima."),
    )
    engine = make_engine(http, time_)

    first = await engine.chat([ChatMessage.user("weather in Lima?")], tools=[weather])
    assert first.content == ""
    assert first.finish_reason == "tool_calls"
    assert first.tool_calls == (
        ToolCall(id="call_abc", name="get_weather", arguments_json='{"city": "Lima"}'),
    )
    assert fake.requests[0]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]

    history = [
        ChatMessage.user("weather in Lima?"),
        ChatMessage.assistant(tool_calls=first.tool_calls),
        ChatMessage.tool('{"sky": "sunny"}', tool_call_id="call_abc", name="get_weather"),
    ]
    second = await engine.chat(history, tools=[weather])
    assert second.content == "Sunny in Lima."
    assert fake.requests[1]["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Lima"}'},
                }
            ],
        },
        {
            "role": "tool",
            "content": '{"sky": "sunny"}',
            "name": "get_weather",
            "tool_call_id": "call_abc",
        },
    ]


async def test_tool_choice_is_sent_with_tools_only(http, fake, time_):
    engine = make_engine(http, time_)
    await engine.chat(HELLO, tools=[ToolSpec(name="f")], tool_choice="required")
    await engine.chat(HELLO, tool_choice="none")  # OpenAI refuses tool_choice without tools
    await engine.chat(HELLO, tools=[ToolSpec(name="f")])
    with_tools, without_tools, default = fake.requests
    assert with_tools["tool_choice"] == "required"
    assert "tool_choice" not in without_tools and "tools" not in without_tools
    assert "tool_choice" not in default


ROUTE_SCHEMA = {
    "title": "route",
    "type": "object",
    "properties": {"agent": {"type": "string", "enum": ["faq", "support"]}},
    "required": ["agent"],
    "additionalProperties": False,
}


async def test_response_schema_is_sent_as_a_strict_json_schema(http, fake, time_):
    fake.then(Complete(content='{"agent": "faq"}'))
    engine = make_engine(http, time_)
    reply = await engine.chat(HELLO, response_schema=ROUTE_SCHEMA, temperature=0.0)
    assert reply.content == '{"agent": "faq"}'
    assert fake.requests[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "route", "schema": ROUTE_SCHEMA, "strict": True},
    }
    await engine.chat(HELLO)
    assert "response_format" not in fake.requests[1]


@pytest.mark.parametrize(
    ("title", "name"),
    [
        (None, "response"),
        ("has spaces", "response"),
        ("x" * 65, "response"),
        ("ok-name_1", "ok-name_1"),
    ],
)
def test_response_format_name_follows_openai_rules(title, name):
    schema = {"type": "object"} if title is None else {"type": "object", "title": title}
    assert response_format_for(schema)["json_schema"]["name"] == name


async def test_429_honours_retry_after_then_succeeds(http, fake, time_):
    fake.then(Status(429, {"error": {"message": "slow down"}}, {"Retry-After": "3"}), Complete())
    engine = make_engine(http, time_)
    reply = await engine.chat(HELLO)
    assert reply.content == "hello"
    assert fake.count == 2
    assert time_.sleeps == [3.0]  # the server's 3 s, not the 0.5 s backoff


async def test_429_with_a_too_long_retry_after_goes_to_the_caller(http, fake, time_):
    fake.then(Status(429, {"error": {"message": "quota"}}, {"Retry-After": "120"}))
    engine = make_engine(http, time_, max_retry_after_s=30.0)
    with pytest.raises(LLMRateLimited) as caught:
        await engine.chat(HELLO)
    assert caught.value.retry_after == 120.0
    assert caught.value.status_code == 429
    assert caught.value.is_transient
    assert fake.count == 1
    assert time_.sleeps == []


async def test_500_then_success(http, fake, time_):
    fake.then(Status(500, "Internal Server Error"), Complete(content="recovered"))
    engine = make_engine(http, time_)
    reply = await engine.chat(HELLO)
    assert reply.content == "recovered"
    assert fake.count == 2
    assert time_.sleeps == [0.5]
    assert reply.latency_ms == 500.0  # the whole call, waits included (fake clock)


async def test_5xx_every_time_raises_unavailable_after_retries(http, fake, time_):
    fake.then(*[Status(503, {"message": "loading model"})] * 5)
    engine = make_engine(http, time_)
    with pytest.raises(LLMUnavailable) as caught:
        await engine.chat(HELLO)
    assert caught.value.status_code == 503
    assert "loading model" in str(caught.value)
    assert fake.count == 3  # 1 + max_retries
    assert time_.sleeps == [0.5, 1.0]  # exponential


async def test_400_is_a_bad_request_without_retry(http, fake, time_):
    fake.then(Status(400, {"error": {"message": "temperature must be <= 2", "code": None}}))
    engine = make_engine(http, time_)
    with pytest.raises(LLMBadRequest) as caught:
        await engine.chat(HELLO, temperature=5)
    assert type(caught.value) is LLMBadRequest
    assert "temperature must be <= 2" in str(caught.value)
    assert not caught.value.is_transient
    assert fake.count == 1
    assert time_.sleeps == []


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "too long", "code": "context_length_exceeded"}},  # OpenAI
        {"object": "error", "message": "This model's maximum context length is 2048 tokens."},
    ],
)
async def test_context_too_long(http, fake, time_, body):
    fake.then(Status(400, body))
    engine = make_engine(http, time_)
    with pytest.raises(LLMContextTooLong):
        await engine.chat(HELLO)
    assert fake.count == 1


@pytest.mark.parametrize("status", [401, 403, 404, 422])
async def test_other_4xx_are_permanent(http, fake, time_, status):
    fake.then(Status(status, {"error": "model 'nope' not found"}))  # Ollama's error shape
    engine = make_engine(http, time_)
    with pytest.raises(LLMBadRequest) as caught:
        await engine.chat(HELLO)
    assert caught.value.status_code == status
    assert "model 'nope' not found" in str(caught.value)
    assert fake.count == 1


async def test_garbage_json_is_a_bad_response(http, fake, time_):
    fake.then(Raw('{"choices": [ this is not json'))
    engine = make_engine(http, time_)
    with pytest.raises(LLMBadResponse):
        await engine.chat(HELLO)
    assert fake.count == 1  # not retried


@pytest.mark.parametrize(
    "body", ['{"object": "list", "data": []}', '{"choices": []}', "[1, 2]", '{"choices": [{}]}']
)
async def test_json_that_is_not_a_completion_is_a_bad_response(http, fake, time_, body):
    fake.then(Raw(body))
    engine = make_engine(http, time_)
    with pytest.raises(LLMBadResponse):
        await engine.chat(HELLO)


async def test_timeout_after_retries(http, fake):
    fake.then(Hang(), Hang(), Hang())
    sleeps: list[float] = []

    async def no_wait(seconds: float) -> None:
        sleeps.append(seconds)

    engine = OpenAICompatibleEngine(
        http, BASE_URL, None, "m", timeout_s=0.05, max_retries=2, sleep=no_wait
    )
    try:
        with pytest.raises(LLMTimeout) as caught:
            await engine.chat(HELLO)
    finally:
        fake.release()
    assert caught.value.is_transient
    assert fake.count == 3
    assert len(sleeps) == 2


async def test_call_budget_stops_the_retries(http, fake, time_):
    fake.then(*[Status(502, "bad gateway")] * 5)
    engine = make_engine(http, time_, backoff=Backoff(initial_s=1.0, jitter=0.0), max_retries=5)
    with pytest.raises(LLMUnavailable):
        await engine.chat(HELLO, timeout_s=2.5)
    # t=0 fail, wait 1 -> t=1 fail, the next wait (2 s) would pass the 2.5 s budget: give up.
    assert fake.count == 2
    assert time_.sleeps == [1.0]


async def test_call_budget_bounds_a_hanging_attempt(http, fake):
    fake.then(Hang())
    engine = OpenAICompatibleEngine(http, BASE_URL, None, "m", timeout_s=60.0, max_retries=0)
    try:
        with pytest.raises(LLMTimeout):
            await engine.chat(HELLO, timeout_s=0.05)
    finally:
        fake.release()


async def test_connection_refused_is_unavailable_after_retries(time_):
    attempts = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url)
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        engine = make_engine(http, time_)
        with pytest.raises(LLMUnavailable) as caught:
            await engine.chat(HELLO)
    assert "ConnectError" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert len(attempts) == 3
    assert time_.sleeps == [0.5, 1.0]


async def test_close_closes_only_an_owned_client(fake, time_):
    shared = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app))
    owned = httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app))
    await make_engine(shared, time_).close()
    engine = make_engine(owned, time_, owns_http=True)
    await engine.close()
    assert not shared.is_closed
    assert owned.is_closed
    with pytest.raises(LLMUnavailable):
        await engine.chat(HELLO)
    await shared.aclose()


def test_repr_hides_the_key(http, time_):
    engine = make_engine(http, time_, api_key="sk-very-secret")
    assert "sk-very-secret" not in repr(engine)
    assert "sk-very-secret" not in repr(vars(engine))


def test_invalid_settings_are_refused(http):
    with pytest.raises(ValueError, match="timeout_s"):
        OpenAICompatibleEngine(http, BASE_URL, None, "m", timeout_s=0)
    with pytest.raises(ValueError, match="max_retries"):
        OpenAICompatibleEngine(http, BASE_URL, None, "m", max_retries=-1)


def test_the_default_backoff_is_half_a_second_doubling_to_eight_with_ten_percent_jitter():
    assert [DEFAULT_BACKOFF.nominal(n) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1, 2, 4, 8, 8]
    assert DEFAULT_BACKOFF.jitter == 0.1
    backoff = Backoff(initial_s=0.5, factor=2.0, max_s=3.0, jitter=0.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_the_engine_draws_its_jitter_from_the_injected_rng(http, fake, time_):
    fake.then(Status(503, "busy"), Status(503, "busy"), Complete(content="ok"))
    engine = make_engine(http, time_, backoff=Backoff(initial_s=1.0, jitter=0.2), rng=Random(7))
    assert (await engine.chat(HELLO)).content == "ok"
    draws = Random(7)
    expected = [1.0 * draws.uniform(0.8, 1.2), 2.0 * draws.uniform(0.8, 1.2)]
    assert time_.sleeps == pytest.approx(expected)
    assert all(0.8 <= s / n <= 1.2 for s, n in zip(time_.sleeps, (1.0, 2.0), strict=True))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "Retry-After": "1"}, 0.25),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({"Retry-After": "-3"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers, expected):
    assert parse_retry_after(httpx.Headers(headers)) == expected


def test_reader_is_tolerant():
    data = {
        "model": "",
        "brand_new_field": {"x": 1},
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"function": {"name": "lookup", "arguments": {"q": "x"}}},  # no id, object
                        {"function": {"arguments": "{}"}},  # no name: dropped
                        "garbage",
                    ],
                },
                "finish_reason": "something_new",
            }
        ],
        "usage": {"prompt_tokens": "many", "completion_tokens": 4},
    }
    reply = reply_from_openai(data, engine="e", default_model="fallback", latency_ms=1.0)
    assert reply.content == ""
    assert reply.tool_calls == (ToolCall(id="call_0", name="lookup", arguments_json='{"q": "x"}'),)
    assert json.loads(reply.tool_calls[0].arguments_json) == {"q": "x"}
    assert reply.finish_reason == "something_new"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (0, 4)
    assert reply.model == "fallback"
