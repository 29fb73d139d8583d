"""An OpenAI chat-completions request, read strictly enough to refuse what we cannot honour.

What the vLLM deployment accepts, over HTTP (`POST /v1/chat/completions`) and through its
handle: messages (text content, or text parts), tools and `tool_choice` (including a named
function), `response_format` (`json_schema` or `json_object`), `max_tokens` /
`max_completion_tokens`, `temperature`, `top_p`, `stop`, `seed`, `stream` and
`stream_options.include_usage`. Fields we do not use (`user`, `logprobs`=false, ...) are
ignored, as OpenAI-compatible servers do; a value we cannot honour (`n` > 1, an image part,
an unknown tool in `tool_choice`) is a `LLMBadRequest` that says which field is wrong.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from whatsray.llm.protocol import ChatMessage, LLMBadRequest, ToolCall, ToolChoice, ToolSpec


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class FunctionDef(_Lenient):
    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolDef(_Lenient):
    type: Literal["function"] = "function"
    function: FunctionDef


class CalledFunction(_Lenient):
    name: str
    arguments: str | dict[str, Any] = "{}"


class RequestToolCall(_Lenient):
    id: str = ""
    type: Literal["function"] = "function"
    function: CalledFunction


class ContentPart(_Lenient):
    type: str
    text: str | None = None


class RequestMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[RequestToolCall] | None = None

    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        texts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise ValueError(f"content parts of type {part.type!r} are not supported")
            texts.append(part.text)
        return "".join(texts)


class NamedFunction(_Lenient):
    name: str


class NamedToolChoice(_Lenient):
    type: Literal["function"] = "function"
    function: NamedFunction


class JsonSchemaFormat(_Lenient):
    name: str = "response"
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_when_json_schema(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type 'json_schema' needs a 'json_schema' object with a 'schema'")
        return self


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    model: str | None = None
    messages: list[RequestMessage] = Field(min_length=1)
    tools: list[ToolDef] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    response_format: ResponseFormat | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=1)  # one choice per request
    stream: bool = False
    stream_options: StreamOptions | None = None

    @model_validator(mode="after")
    def _check_tool_choice(self) -> ChatCompletionRequest:
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {tool.function.name for tool in self.tools or ()}
            if self.tool_choice.function.name not in names:
                raise ValueError(
                    f"tool_choice names {self.tool_choice.function.name!r}, which is not in tools"
                )
        return self

    # --- What the engine gets -----------------------------------------------------------------

    def chat_messages(self) -> tuple[ChatMessage, ...]:
        return tuple(_chat_message(m) for m in self.messages)

    def tool_specs(self) -> tuple[ToolSpec, ...]:
        """The offered tools; a named `tool_choice` offers only that one."""
        tools = [
            ToolSpec(
                name=t.function.name,
                description=t.function.description,
                parameters=t.function.parameters,
            )
            for t in self.tools or ()
        ]
        if isinstance(self.tool_choice, NamedToolChoice):
            tools = [t for t in tools if t.name == self.tool_choice.function.name]
        return tuple(tools)

    def engine_tool_choice(self) -> ToolChoice | None:
        if isinstance(self.tool_choice, NamedToolChoice):
            return "required"  # among the one tool offered
        return self.tool_choice

    def response_schema(self) -> dict[str, Any] | None:
        if self.response_format is None or self.response_format.type == "text":
            return None
        if self.response_format.type == "json_object":
            return {"type": "object"}
        assert self.response_format.json_schema is not None  # the validator checked it
        return self.response_format.json_schema.schema_

    def reply_token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def stop_sequences(self) -> list[str] | None:
        if self.stop is None:
            return None
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


def parse_chat_request(payload: Any) -> ChatCompletionRequest:
    """The request in `payload` (a decoded JSON body), or `LLMBadRequest` listing each
    problem with its field."""
    if not isinstance(payload, dict):
        raise LLMBadRequest("the request body must be a JSON object")
    try:
        request = ChatCompletionRequest.model_validate(payload)
        request.chat_messages()  # content parts are checked here
    except ValidationError as exc:
        raise LLMBadRequest(_describe(exc)) from None
    except ValueError as exc:
        raise LLMBadRequest(str(exc)) from None
    return request


def _chat_message(message: RequestMessage) -> ChatMessage:
    role = "system" if message.role == "developer" else message.role
    calls = tuple(
        ToolCall(
            id=call.id or f"call_{index}",
            name=call.function.name,
            arguments_json=(
                call.function.arguments
                if isinstance(call.function.arguments, str)
                else json.dumps(call.function.arguments)
            ),
        )
        for index, call in enumerate(message.tool_calls or (), start=1)
    )
    return ChatMessage(
        role=role,
        content=message.text(),
        name=message.name,
        tool_call_id=message.tool_call_id,
        tool_calls=calls,
    )


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(f"{where}: {str(error['msg']).removeprefix('Value error, ')}")
    return "invalid request: " + "; ".join(problems)
