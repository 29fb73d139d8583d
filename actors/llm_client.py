"""`DeploymentEngine`: the vLLM Serve deployment as a `ChatEngine`, for agent actors.

An agent calls `chat()` as with any engine; the call travels as an OpenAI request through the
deployment's handle (Serve routes it to a replica, where vLLM batches it with every other chat)
and the OpenAI response comes back as a `ChatReply`. `load()` asks a replica for its
`EngineLoad`, `stream()` yields text deltas (time to first token).

Errors arrive as the engine raised them (`LLMError`s survive pickling); a replica or the
deployment gone becomes `LLMUnavailable`, no answer in `timeout_s` an `LLMTimeout` (and the
request is cancelled in the replica, so vLLM stops generating it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any

from ray import serve
from ray.exceptions import RayActorError, RayError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from actors.llm_deployment import LLM_DEPLOYMENT_NAME
from whatsray.llm.load import EngineLoad
from whatsray.llm.openai_schema import (
    messages_to_openai,
    reply_from_openai,
    response_format_for,
    tool_to_openai,
)
from whatsray.llm.protocol import (
    ChatMessage,
    ChatReply,
    LLMError,
    LLMTimeout,
    LLMUnavailable,
    ToolChoice,
    ToolSpec,
)


class DeploymentEngine:
    """`ChatEngine` (+ `load()`, `stream()`) over an `LLMServer` deployment handle."""

    def __init__(self, handle: Any, *, name: str = "vllm", model: str | None = None) -> None:
        self._handle = handle
        self.name = name
        self.model = model  # None: the deployment's own model

    @classmethod
    def for_app(
        cls, app_name: str, *, deployment: str = LLM_DEPLOYMENT_NAME, name: str = "vllm"
    ) -> DeploymentEngine:
        """The engine over the LLM deployment `deployment` of the Serve application `app_name`
        (to call from inside any actor or replica of the cluster)."""
        return cls(serve.get_deployment_handle(deployment, app_name=app_name), name=name)

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
        loop = asyncio.get_running_loop()
        started = loop.time()
        payload = self._payload(
            messages, max_tokens, temperature, tools, tool_choice, response_schema
        )
        response = self._handle.chat.remote(payload)
        data = await self._call(response, timeout_s, response)
        return reply_from_openai(
            data,
            engine=self.name,
            default_model=self.model or "",
            latency_ms=(loop.time() - started) * 1000.0,
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
    ) -> AsyncIterator[str]:
        """The reply's text deltas as the replica generates them."""
        payload = self._payload(
            messages, max_tokens, temperature, tools, tool_choice, response_schema
        )
        response = self._handle.options(stream=True).chat_stream.remote(payload)
        deadline = None if timeout_s is None else asyncio.get_running_loop().time() + timeout_s
        try:
            while True:
                chunk = await self._call(_next(response), _remaining(deadline), response)
                if chunk is None:
                    return
                if "error" in chunk:
                    raise LLMError(str(chunk["error"].get("message")), engine=self.name)
                for choice in chunk.get("choices", ()):
                    text = choice.get("delta", {}).get("content")
                    if text:
                        yield text
        finally:
            response.cancel()  # a no-op once the stream has ended

    async def load(self) -> EngineLoad:
        """The load of one replica (the one Serve routes this call to)."""
        response = self._handle.load.remote()
        load: EngineLoad = await self._call(response, 10.0, response)
        return load

    async def close(self) -> None:
        """Nothing to free: Serve owns the deployment and the handle."""

    def _payload(
        self,
        messages: Sequence[ChatMessage],
        max_tokens: int | None,
        temperature: float | None,
        tools: Sequence[ToolSpec] | None,
        tool_choice: ToolChoice | None,
        response_schema: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"messages": messages_to_openai(messages)}
        if self.model is not None:
            payload["model"] = self.model
        if max_tokens is not None:
            payload["max_tokens"] = max_tokens
        if temperature is not None:
            payload["temperature"] = temperature
        if tools:
            payload["tools"] = [tool_to_openai(tool) for tool in tools]
            if tool_choice is not None:
                payload["tool_choice"] = tool_choice
        if response_schema is not None:
            payload["response_format"] = response_format_for(response_schema)
        return payload

    async def _call(self, awaitable: Awaitable[Any], timeout_s: float | None, response: Any) -> Any:
        """Await a handle call, turning Ray's and Serve's failures into `LLMError`s; on a
        timeout, `response` (the call's DeploymentResponse) is cancelled in the replica."""
        try:
            async with asyncio.timeout(timeout_s):
                return await awaitable
        except TimeoutError:
            response.cancel()
            raise LLMTimeout(f"no answer within {timeout_s} s", engine=self.name) from None
        except LLMError:
            raise
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, LLMError):
                raise cause from None
            raise LLMError(f"the LLM deployment failed: {cause!r}", engine=self.name) from exc
        except (RayActorError, BackPressureError, DeploymentUnavailableError) as exc:
            raise LLMUnavailable(
                f"the LLM deployment is unavailable: {exc}", engine=self.name
            ) from exc
        except RayError as exc:
            raise LLMUnavailable(f"the LLM deployment failed: {exc}", engine=self.name) from exc


async def _next(response: Any) -> Any:
    try:
        return await response.__anext__()
    except StopAsyncIteration:
        return None


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(deadline - asyncio.get_running_loop().time(), 0.0)


class HandleBackend:
    """The OpenAI HTTP API's backend (`whatsray.llm.openai_server.ChatBackend`) over a deployment
    handle: the ingress serves `/llm/<engine>/v1/...` by forwarding to the LLM deployment."""

    def __init__(self, handle: Any, models: Sequence[str]) -> None:
        self._handle = handle
        self._models = list(models)

    def models(self) -> list[str]:
        return list(self._models)

    async def chat(self, request: Any) -> dict[str, Any]:
        response: dict[str, Any] = await self._handle.chat.remote(_as_payload(request))
        return response

    async def stream(self, request: Any) -> AsyncIterator[dict[str, Any]]:
        response = self._handle.options(stream=True).chat_stream.remote(_as_payload(request))
        try:
            async for chunk in response:
                yield chunk
        finally:
            response.cancel()


def _as_payload(request: Any) -> dict[str, Any]:
    payload: dict[str, Any] = request.model_dump(mode="json", exclude_none=True)
    return payload
