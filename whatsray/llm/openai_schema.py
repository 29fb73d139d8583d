"""OpenAI's chat-completions shape, both ways: our values -> request JSON, response JSON -> reply.

Shared by every engine that speaks this shape (the HTTP engine, llama.cpp's
`create_chat_completion`, a vLLM server). The reader is tolerant: missing usage becomes zeros,
unknown fields are ignored, a tool call without an id gets one; only an answer with no usable
choice is an `LLMBadResponse`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from whatsray.llm.protocol import (
    ChatMessage,
    ChatReply,
    LLMBadResponse,
    ToolCall,
    ToolSpec,
    Usage,
)

# How servers say "context too long": OpenAI's error code, vLLM's and llama.cpp's wording.
_CONTEXT_TOO_LONG = re.compile(
    r"context[_ ]length|maximum context|context window|too many tokens|exceed(s|ed)? .*context",
    re.IGNORECASE,
)


def message_to_openai(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name is not None:
        out["name"] = message.name
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    if message.tool_calls:
        out["tool_calls"] = [tool_call_to_openai(call) for call in message.tool_calls]
        if not message.content:
            out["content"] = None  # OpenAI's form for "only tool calls"
    return out


def tool_call_to_openai(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments_json},
    }


def tool_to_openai(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


# OpenAI's rule for `json_schema.name`: letters, digits, underscores and dashes, up to 64.
_SCHEMA_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_SCHEMA_NAME = "response"


def response_format_for(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The `response_format` that asks for a JSON instance of `schema` (OpenAI structured
    outputs, also understood by vLLM's server). The name is the schema's `title` when that is a
    valid name, else "response"; `strict` makes OpenAI enforce the schema while decoding."""
    title = schema.get("title")
    name = title if isinstance(title, str) and _SCHEMA_NAME.match(title) else DEFAULT_SCHEMA_NAME
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": dict(schema), "strict": True},
    }


def messages_to_openai(messages: Sequence[ChatMessage]) -> list[dict[str, Any]]:
    return [message_to_openai(m) for m in messages]


def reply_from_openai(
    data: Any, *, engine: str, default_model: str, latency_ms: float
) -> ChatReply:
    """Read a chat-completion response body (already decoded from JSON)."""
    if not isinstance(data, dict):
        raise LLMBadResponse("response is not a JSON object", engine=engine)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise LLMBadResponse("response has no choices", engine=engine, details=_preview(data))
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise LLMBadResponse("choice has no message", engine=engine, details=_preview(data))
    content = message.get("content")
    finish_reason = choice.get("finish_reason")
    model = data.get("model")
    return ChatReply(
        content=content if isinstance(content, str) else "",
        tool_calls=_tool_calls(message.get("tool_calls")),
        finish_reason=finish_reason if isinstance(finish_reason, str) else None,
        usage=usage_from_openai(data.get("usage")),
        model=model if isinstance(model, str) and model else default_model,
        engine=engine,
        latency_ms=latency_ms,
    )


def usage_from_openai(usage: Any) -> Usage:
    if not isinstance(usage, dict):
        return Usage()
    return Usage(
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
    )


def looks_like_context_too_long(*texts: str | None) -> bool:
    return any(text and _CONTEXT_TOO_LONG.search(text) for text in texts)


def _tool_calls(raw: Any) -> tuple[ToolCall, ...]:
    if not isinstance(raw, list):
        return ()
    calls = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            continue
        function = item.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            continue
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            # Some servers (older Ollama) send an object instead of JSON text.
            arguments = json.dumps(arguments if arguments is not None else {})
        call_id = item.get("id")
        calls.append(
            ToolCall(
                id=call_id if isinstance(call_id, str) and call_id else f"call_{index}",
                name=function["name"],
                arguments_json=arguments,
            )
        )
    return tuple(calls)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _preview(data: Any, limit: int = 200) -> str:
    text = json.dumps(data, default=str)
    return text if len(text) <= limit else text[:limit] + "..."
