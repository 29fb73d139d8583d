"""The vLLM Serve deployment on real Ray and vLLM, with the default model (SmolLM2 prepared in the
data directory): through its handle (as agent actors use it) and over HTTP (OpenAI's API).

One Ray cluster and one deployment serve the module. The last test kills the replica's engine
and waits for Serve to replace the replica: it must stay last in this file.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from actors.llm_client import DeploymentEngine
from tests.support.ray_serve import local_ray_serve
from tests.support.servers import free_port
from whatsray.llm import EngineLoad
from whatsray.llm.protocol import ChatMessage, LLMBadRequest, LLMUnavailable, ToolSpec

MODEL = "smollm2-135m-instruct"
CAPITAL = [ChatMessage.user("What is the capital of France?")]
WEATHER = ToolSpec(
    name="get_weather",
    description="The weather now in a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)


@dataclass
class Deployed:
    handle: Any
    http: httpx.Client  # base URL: the application's route prefix
    ready_s: float

    def engine(self) -> DeploymentEngine:
        return DeploymentEngine(self.handle)


@pytest.fixture(scope="module")
def llm(smollm2_dir: Path) -> Iterator[Deployed]:
    from ray import serve

    from actors.llm_deployment import build_llm_app

    port = free_port()
    with local_ray_serve(port):
        started = time.monotonic()
        spec = {
            "engine": "vllm",  # no model: the prepared SmolLM2 of the data directory
            "max_num_seqs": 32,
            "max_tokens": 32,
            "health_check_period_s": 2,
            "health_check_timeout_s": 30,
        }
        handle = serve.run(build_llm_app(spec), name="llm", route_prefix="/llm")
        ready_s = time.monotonic() - started
        print(f"\nLLM deployment ready in {ready_s:.1f} s")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/llm", timeout=120) as http:
            yield Deployed(handle, http, ready_s)


# --- Through the handle --------------------------------------------------------------------


async def test_the_handle_answers(llm: Deployed) -> None:
    reply = await llm.engine().chat(CAPITAL, temperature=0)
    assert "Paris" in reply.content
    assert reply.finish_reason == "stop"
    assert reply.model == MODEL
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0


async def test_an_engine_finds_the_deployment_by_application_name(llm: Deployed) -> None:
    reply = await DeploymentEngine.for_app("llm").chat(CAPITAL, temperature=0)
    assert "Paris" in reply.content


async def test_the_handle_passes_tools_and_schemas(llm: Deployed) -> None:
    engine = llm.engine()
    called = await engine.chat(
        [ChatMessage.user("Weather in Rome?")], tools=[WEATHER], tool_choice="required"
    )
    assert [call.name for call in called.tool_calls] == ["get_weather"]
    assert called.finish_reason == "tool_calls"
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    structured = await engine.chat([ChatMessage.user("Is water wet?")], response_schema=schema)
    assert isinstance(json.loads(structured.content)["ok"], bool)


async def test_the_handle_streams(llm: Deployed) -> None:
    pieces = [piece async for piece in llm.engine().stream(CAPITAL, temperature=0)]
    assert len(pieces) > 1
    assert "Paris" in "".join(pieces)


async def test_errors_come_back_typed_through_the_handle(llm: Deployed) -> None:
    with pytest.raises(LLMBadRequest, match="context"):
        await llm.engine().chat([ChatMessage.user("bike " * 3000)])


async def test_many_chats_at_once_are_batched(llm: Deployed) -> None:
    engine = llm.engine()
    samples: list[EngineLoad] = []

    async def sample() -> None:
        while True:
            samples.append(await engine.load())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    started = time.monotonic()
    chats = [[ChatMessage.user(f"Tell me about bicycle number {n}.")] for n in range(32)]
    replies = await asyncio.gather(*(engine.chat(chat, max_tokens=32) for chat in chats))
    elapsed = time.monotonic() - started
    sampler.cancel()
    assert len(replies) == 32 and all(reply.usage.completion_tokens > 0 for reply in replies)
    peak = max(sample.running for sample in samples)
    tokens = sum(reply.usage.completion_tokens for reply in replies)
    print(f"\n32 chats: {tokens} tokens in {elapsed:.1f} s, peak running {peak}")
    assert peak > 1  # the deployment does not serialize: vLLM ran requests together


# --- Over HTTP (OpenAI's API) ----------------------------------------------------------------


def test_http_lists_the_model(llm: Deployed) -> None:
    response = llm.http.get("/v1/models")
    assert response.status_code == 200
    assert [model["id"] for model in response.json()["data"]] == [MODEL]


def test_http_chat_completion(llm: Deployed) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "temperature": 0,
        "max_completion_tokens": 20,
    }
    response = llm.http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["object"] == "chat.completion"
    assert "Paris" in data["choices"][0]["message"]["content"]
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["total_tokens"] > data["usage"]["completion_tokens"] > 0


def test_http_stream(llm: Deployed) -> None:
    body = {
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with llm.http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "Paris" in text
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({}, 400, "messages"),
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "n"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": 5}, 400, "temperature"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "role"),
        ({"messages": [{"role": "user", "content": "bike " * 3000}]}, 400, "context"),
        ({"messages": [{"role": "user", "content": "hi"}], "model": "gpt-9"}, 404, "gpt-9"),
    ],
)
def test_http_bad_requests_get_openai_errors(
    llm: Deployed, body: dict[str, Any], status: int, words: str
) -> None:
    response = llm.http.post("/v1/chat/completions", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert words in error["message"]
    assert error["type"] == "invalid_request_error"


def test_http_body_that_is_not_json(llm: Deployed) -> None:
    response = llm.http.post("/v1/chat/completions", content=b"{nope")
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]["message"]


# --- An agent turn on the deployment -----------------------------------------------------------


async def test_an_agent_turn_runs_on_the_deployment(llm: Deployed) -> None:
    from whatsray.agents import Agent, AgentOutcome, AgentTurnRequest, parse_agents_config

    config = parse_agents_config(
        {
            "engines": {"vllm": {"engine": "vllm"}},
            "router": {"default_agent": "assistant"},
            "agents": [
                {
                    "name": "assistant",
                    "description": "General assistant",
                    "system_prompt": "You are a helpful assistant. Answer in one sentence.",
                    "engine": "vllm",
                    "max_tokens": 40,
                    "tools": ["get_messages"],  # offered to the model through the handle
                }
            ],
        }
    )
    agent = Agent(config.agent("assistant"), llm.engine())
    chat = "106540352242922:16505551234"
    result = await agent.run(AgentTurnRequest("turn-1", chat, ("What is the capital of France?",)))
    assert result.outcome == AgentOutcome.OK, result.error
    assert result.reply_parts and all(part.strip() for part in result.reply_parts)
    assert result.model == MODEL
    assert result.engine_calls >= 1 and result.usage.completion_tokens > 0


# --- Health: keep last -------------------------------------------------------------------------


async def test_a_dead_engine_fails_the_health_check_and_serve_replaces_the_replica(
    llm: Deployed,
) -> None:
    import psutil  # comes with vLLM

    def engine_cores() -> list[psutil.Process]:
        processes = psutil.Process().children(recursive=True)
        return [p for p in processes if "EngineCore" in p.name()]

    await llm.handle.check_health.remote()
    cores = engine_cores()
    assert len(cores) == 1
    cores[0].kill()
    deadline = time.monotonic() + 30
    while True:
        try:
            await llm.handle.check_health.remote()
        except LLMUnavailable:
            break
        assert time.monotonic() < deadline, "check_health did not report the dead engine"
        await asyncio.sleep(0.2)
    # Serve's health check (every 2 s here) now replaces the replica; a new one loads the model.
    deadline = time.monotonic() + 300
    while True:
        try:
            reply = await llm.engine().chat(CAPITAL, temperature=0, timeout_s=60)
            break
        except LLMUnavailable:
            assert time.monotonic() < deadline, "Serve did not replace the dead replica"
            await asyncio.sleep(1)
    assert "Paris" in reply.content
    assert [p.pid for p in engine_cores()] != [cores[0].pid]
