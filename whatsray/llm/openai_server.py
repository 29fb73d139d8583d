"""The OpenAI-compatible HTTP API of a chat engine: `POST /v1/chat/completions`, `GET /v1/models`.

Ray-free: a FastAPI `APIRouter` over a small `ChatBackend` (chat -> response dict, stream ->
chunk dicts, models). The vLLM Serve deployment mounts it, and its handle methods call the same
backend, so HTTP clients and agent actors get the same answers. `EngineBackend` is the backend
over an engine that streams (`VLLMEngine`).

Requests are never serialized here: every request is its own coroutine, and the engine batches.
Errors use OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`: 400 for a bad
request or a prompt that does not fit, 404 for an unknown model, 503 when the engine is down,
504 on a timeout. A stream answers its errors before the first byte when it can (the first chunk
is produced before the response starts); an error after that ends the stream with an error
event, as OpenAI's and vLLM's servers do.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from typing import Any, Protocol

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from whatsray.llm.openai_request import ChatCompletionRequest, parse_chat_request
from whatsray.llm.openai_schema import tool_call_to_openai
from whatsray.llm.protocol import (
    ChatMessage,
    ChatReply,
    LLMBadRequest,
    LLMError,
    LLMTimeout,
    LLMUnavailable,
    ToolChoice,
    ToolSpec,
    Usage,
)

__all__ = [
    "ChatBackend",
    "EngineBackend",
    "ModelNotFound",
    "StreamingChatEngine",
    "error_body",
    "error_status",
    "openai_router",
]


class ModelNotFound(LLMBadRequest):
    """The request names a model this server does not serve."""


class ChatBackend(Protocol):
    async def chat(self, request: ChatCompletionRequest) -> dict[str, Any]: ...

    def stream(self, request: ChatCompletionRequest) -> AsyncIterator[dict[str, Any]]: ...

    def models(self) -> list[str]: ...


class _Chunk(Protocol):
    @property
    def text(self) -> str: ...

    @property
    def finish_reason(self) -> str | None: ...

    @property
    def usage(self) -> Usage | None: ...


class StreamingChatEngine(Protocol):
    """What `EngineBackend` needs: `chat()` plus `stream_chunks()` (VLLMEngine has both)."""

    name: str

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
    ) -> ChatReply: ...

    def stream_chunks(
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
    ) -> AsyncGenerator[_Chunk, None]: ...


class EngineBackend:
    """`ChatBackend` over one engine serving one model name.

    A streamed request that offers tools is answered in one piece (one content or tool-call
    delta, then the finish): tool calls are read from the whole reply, never from fragments.
    """

    def __init__(self, engine: StreamingChatEngine, model_name: str) -> None:
        self._engine = engine
        self._model = model_name

    def models(self) -> list[str]:
        return [self._model]

    async def chat(self, request: ChatCompletionRequest) -> dict[str, Any]:
        self._check_model(request)
        reply = await self._engine.chat(request.chat_messages(), **_engine_kwargs(request))
        return {
            "id": _completion_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self._model,
            "choices": [
                {
                    "index": 0,
                    "message": _reply_message(reply),
                    "finish_reason": reply.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _usage(reply.usage),
        }

    async def stream(self, request: ChatCompletionRequest) -> AsyncIterator[dict[str, Any]]:
        """The reply as chunks. Nothing is yielded before the engine has produced something,
        so a refused request fails at the first `anext()`, before any byte is sent."""
        self._check_model(request)
        chunk = _ChunkWriter(_completion_id(), self._model)
        if request.tool_specs() and request.engine_tool_choice() != "none":
            reply = await self._engine.chat(request.chat_messages(), **_engine_kwargs(request))
            yield chunk.delta({"role": "assistant", "content": ""})
            yield chunk.delta(_reply_delta(reply))
            yield chunk.delta({}, finish_reason=reply.finish_reason)
            if request.include_usage():
                yield chunk.usage(reply.usage)
            return
        usage = Usage()
        pieces = self._engine.stream_chunks(request.chat_messages(), **_engine_kwargs(request))
        async with aclosing(pieces):  # stops vLLM's request if the client goes away
            first = True
            async for piece in pieces:
                if first:
                    yield chunk.delta({"role": "assistant", "content": ""})
                    first = False
                if piece.text:
                    yield chunk.delta({"content": piece.text})
                if piece.usage is not None:
                    usage = piece.usage
                if piece.finish_reason is not None:
                    yield chunk.delta({}, finish_reason=piece.finish_reason)
        if request.include_usage():
            yield chunk.usage(usage)

    def _check_model(self, request: ChatCompletionRequest) -> None:
        if request.model is not None and request.model not in self.models():
            raise ModelNotFound(
                f"the model {request.model!r} does not exist; this server serves "
                f"{', '.join(repr(m) for m in self.models())}",
                engine=self._engine.name,
            )


def openai_router(backend: ChatBackend) -> APIRouter:
    """`POST /v1/chat/completions` and `GET /v1/models` over `backend`."""
    router = APIRouter()

    @router.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        created = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": created, "owned_by": "whatsray"}
                for name in backend.models()
            ],
        }

    @router.post("/v1/chat/completions")
    async def chat_completions(http_request: Request) -> Response:
        try:
            payload = json.loads(await http_request.body())
        except ValueError:
            return _error_response(LLMBadRequest("the request body is not valid JSON"))
        try:
            request = parse_chat_request(payload)
            if not request.stream:
                return JSONResponse(await backend.chat(request))
            chunks = backend.stream(request)
            first = await anext(chunks)  # errors found before streaming get a status code
        except LLMError as exc:
            return _error_response(exc)
        return StreamingResponse(_sse(first, chunks), media_type="text/event-stream")

    return router


def error_status(error: LLMError) -> int:
    if isinstance(error, ModelNotFound):
        return 404
    if isinstance(error, LLMBadRequest):
        return 400
    if isinstance(error, LLMTimeout):
        return 504
    if isinstance(error, LLMUnavailable):
        return 503
    return 500


def error_body(error: LLMError) -> dict[str, Any]:
    """OpenAI's error object for `error`."""
    status = error_status(error)
    kind = "invalid_request_error" if status < 500 else "server_error"
    code = "model_not_found" if status == 404 else None
    return {"error": {"message": error.message, "type": kind, "param": None, "code": code}}


def _error_response(error: LLMError) -> JSONResponse:
    return JSONResponse(error_body(error), status_code=error_status(error))


async def _sse(
    first: dict[str, Any], chunks: AsyncIterator[dict[str, Any]]
) -> AsyncIterator[bytes]:
    yield _event(first)
    try:
        async for chunk in chunks:
            yield _event(chunk)
    except LLMError as exc:  # the status line is gone: the error travels as an event
        yield _event(error_body(exc))
    yield b"data: [DONE]\n\n"


def _event(data: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


class _ChunkWriter:
    def __init__(self, completion_id: str, model: str) -> None:
        self._base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return {**self._base, "choices": [choice]}

    def usage(self, usage: Usage) -> dict[str, Any]:
        return {**self._base, "choices": [], "usage": _usage(usage)}


def _engine_kwargs(request: ChatCompletionRequest) -> dict[str, Any]:
    return {
        "max_tokens": request.reply_token_limit(),
        "temperature": request.temperature,
        "tools": request.tool_specs() or None,
        "tool_choice": request.engine_tool_choice(),
        "response_schema": request.response_schema(),
        "top_p": request.top_p,
        "stop": request.stop_sequences(),
        "seed": request.seed,
    }


def _reply_message(reply: ChatReply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = [tool_call_to_openai(call) for call in reply.tool_calls]
        if not reply.content:
            message["content"] = None
    return message


def _reply_delta(reply: ChatReply) -> dict[str, Any]:
    """The whole reply as one streamed delta (tool calls carry their `index`)."""
    if not reply.tool_calls:
        return {"content": reply.content}
    calls = [
        {"index": index, **tool_call_to_openai(call)} for index, call in enumerate(reply.tool_calls)
    ]
    return {"content": reply.content or None, "tool_calls": calls}


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"
