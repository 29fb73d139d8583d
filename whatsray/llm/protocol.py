"""The one protocol every LLM engine speaks, its value types and its errors.

Engines (scripted, OpenAI-compatible HTTP, llama.cpp, later vLLM) differ in how they produce a
reply, never in what callers see: `ChatMessage`s in, one `ChatReply` out, typed `LLMError`s on
failure. Values are frozen pydantic models (cheap to pickle across Ray processes, no live handles).
Errors keep their state in keyword arguments so they survive `pickle` (Ray pickles exceptions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, Protocol, TypeAlias, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant", "tool"]
# Whether the model may (auto), must not (none) or must (required) call one of the offered tools.
ToolChoice: TypeAlias = Literal["auto", "none", "required"]


class _Value(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ToolCall(_Value):
    """A function call the model asked for. `arguments_json` is the model's raw JSON text:
    it may be malformed, and whoever runs the tool decides what to do with that."""

    id: str
    name: str
    arguments_json: str = "{}"


class ToolSpec(_Value):
    """A function the model may call: name, description, and a JSON schema of its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ChatMessage(_Value):
    """One message of a conversation, in OpenAI's chat shape."""

    role: Role
    content: str = ""
    name: str | None = None  # the tool's name on a "tool" message, or a participant name
    tool_call_id: str | None = None  # on a "tool" message: which call this result answers
    tool_calls: tuple[ToolCall, ...] = ()  # on an "assistant" message that called tools

    @classmethod
    def system(cls, content: str) -> ChatMessage:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> ChatMessage:
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: Sequence[ToolCall] = ()) -> ChatMessage:
        return cls(role="assistant", content=content, tool_calls=tuple(tool_calls))

    @classmethod
    def tool(cls, content: str, tool_call_id: str, name: str | None = None) -> ChatMessage:
        return cls(role="tool", content=content, tool_call_id=tool_call_id, name=name)


class Usage(_Value):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ChatReply(_Value):
    """The model's answer. `finish_reason` is the engine's word for it ("stop", "length",
    "tool_calls", ...), kept as a string because servers add new ones."""

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str | None = None
    usage: Usage = Usage()
    model: str = ""
    engine: str = ""
    latency_ms: float = 0.0
    first_token_ms: float | None = None  # when known: engines that stream internally


@runtime_checkable
class ChatEngine(Protocol):
    """Anything that answers a chat. Implementations must be safe to call concurrently from one
    event loop (they serialize internally where the backend needs it) and must never block it.

    `tool_choice` is passed to engines that support it (ignored by the others).
    `response_schema` is a JSON schema the reply's `content` must be an instance of: engines with
    constrained decoding enforce it (llama.cpp grammar, OpenAI `json_schema`, vLLM structured
    outputs); the others ignore it, so the caller always validates what comes back.
    """

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
    ) -> ChatReply: ...

    async def close(self) -> None: ...


# --- Errors ---------------------------------------------------------------------------------


class LLMError(Exception):
    """Base of every error an engine raises. `is_transient` says whether trying again later
    may succeed; `retry_after` (seconds) is the server's hint when it gave one."""

    is_transient: ClassVar[bool] = False

    def __init__(
        self,
        message: str = "",
        *,
        engine: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        details: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.engine = engine
        self.status_code = status_code
        self.retry_after = retry_after
        self.details = details

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {
            "engine": self.engine,
            "status_code": self.status_code,
            "retry_after": self.retry_after,
            "details": self.details,
        }
        return (_rebuild, (type(self), self.message, kwargs))

    def __str__(self) -> str:
        parts = [self.message or type(self).__name__]
        if self.engine:
            parts.insert(0, f"[{self.engine}]")
        if self.status_code is not None:
            parts.append(f"(HTTP {self.status_code})")
        if self.details:
            parts.append(f"- {self.details}")
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, engine={self.engine!r})"


def _rebuild(cls: type[LLMError], message: str, kwargs: dict[str, Any]) -> LLMError:
    return cls(message, **kwargs)


class LLMUnavailable(LLMError):
    """The engine cannot answer now: connection refused, 5xx, model not loaded, engine closed."""

    is_transient = True


class LLMRateLimited(LLMUnavailable):
    """HTTP 429: too many requests; `retry_after` carries the server's wait when it sent one."""


class LLMTimeout(LLMError):
    """No answer in time. Safe to retry: a chat completion has no side effects."""

    is_transient = True


class LLMBadRequest(LLMError):
    """The engine refused the request (HTTP 4xx: bad model name, bad key, bad parameters).
    Sending it again will fail again."""


class LLMContextTooLong(LLMBadRequest):
    """The prompt does not fit in the model's context window: trim the history, then retry."""


class LLMBadResponse(LLMError):
    """The engine answered something that is not a chat completion (not JSON, no choices)."""


class LLMConfigError(LLMError, ValueError):
    """The engine cannot be built: a package or the model file is missing, or a bad setting."""


ALL_LLM_ERRORS: tuple[type[LLMError], ...] = (
    LLMError,
    LLMUnavailable,
    LLMRateLimited,
    LLMTimeout,
    LLMBadRequest,
    LLMContextTooLong,
    LLMBadResponse,
    LLMConfigError,
)
