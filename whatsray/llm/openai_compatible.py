"""An engine for any OpenAI-compatible chat-completions endpoint: OpenAI, Ollama, a vLLM server.

`POST {base_url}/chat/completions` through an injected `httpx.AsyncClient`. Transient failures
(connect errors, timeouts, 408, 409, 429, 5xx) are retried with exponential backoff, honouring
`Retry-After` (the core's one rule: `whatsray.retries`); everything else becomes a typed
`LLMError` at once. A chat completion has no side effects, so resending after a timeout is safe.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx
from pydantic import SecretStr

from whatsray.llm.openai_schema import (
    looks_like_context_too_long,
    messages_to_openai,
    reply_from_openai,
    response_format_for,
    tool_to_openai,
)
from whatsray.llm.protocol import (
    ChatMessage,
    ChatReply,
    LLMBadRequest,
    LLMBadResponse,
    LLMContextTooLong,
    LLMError,
    LLMRateLimited,
    LLMTimeout,
    LLMUnavailable,
    ToolChoice,
    ToolSpec,
)
from whatsray.retries import Backoff, parse_retry_after

__all__ = [
    "DEFAULT_BACKOFF",
    "Backoff",
    "OpenAICompatibleEngine",
    "error_for_response",
    "parse_retry_after",
]

logger = logging.getLogger(__name__)


DEFAULT_BACKOFF = Backoff(initial_s=0.5, factor=2.0, max_s=8.0, jitter=0.1)
"""0.5 s, 1 s, 2 s ... capped at 8 s, +-10 %."""


class OpenAICompatibleEngine:
    """Chat through an OpenAI-compatible HTTP API.

    `timeout_s` bounds each HTTP attempt. The `timeout_s` given to `chat()` is the budget for
    the whole call (attempts and waits together); when it runs out the last error is raised.
    A `Retry-After` longer than `max_retry_after_s` is not waited for: the `LLMRateLimited` (or
    `LLMUnavailable`) goes to the caller with `retry_after` set.

    The client is the owner's: `close()` closes it only when `owns_http=True`.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_key: SecretStr | None,
        model: str,
        *,
        timeout_s: float = 60.0,
        max_retries: int = 2,
        backoff: Backoff | None = None,
        max_retry_after_s: float = 30.0,
        max_tokens: int | None = None,
        temperature: float | None = None,
        max_tokens_field: str = "max_tokens",
        extra_body: Mapping[str, Any] | None = None,
        name: str = "openai",
        owns_http: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff = backoff or DEFAULT_BACKOFF
        self.max_retry_after_s = max_retry_after_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.max_tokens_field = max_tokens_field  # "max_completion_tokens" for OpenAI o-series
        self.extra_body = dict(extra_body or {})
        self._http = http
        self._api_key = api_key
        self._owns_http = owns_http
        self._sleep = sleep
        self._clock = clock
        self._rng = rng
        self._closed = False

    def __repr__(self) -> str:  # never shows the key
        return (
            f"OpenAICompatibleEngine(name={self.name!r}, base_url={self.base_url!r}, "
            f"model={self.model!r})"
        )

    @property
    def http(self) -> httpx.AsyncClient:
        return self._http

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

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
        if self._closed:
            raise LLMUnavailable("engine is closed", engine=self.name)
        body = self.request_body(
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            tools=tools,
            tool_choice=tool_choice,
            response_schema=response_schema,
        )
        started = self._clock()
        deadline = None if timeout_s is None else started + timeout_s
        attempt = 0
        while True:
            attempt += 1
            attempt_timeout = self.timeout_s
            if deadline is not None:
                attempt_timeout = min(attempt_timeout, deadline - self._clock())
                if attempt_timeout <= 0:
                    raise LLMTimeout(f"no answer within {timeout_s} s", engine=self.name)
            try:
                data = await self._attempt(body, attempt_timeout)
            except LLMError as exc:
                wait = self._wait_before_retry(exc, attempt)
                if wait is None or (deadline is not None and self._clock() + wait >= deadline):
                    raise
                logger.warning(
                    "%s: attempt %d failed (%s); retrying in %.2f s", self.name, attempt, exc, wait
                )
                await self._sleep(wait)
                continue
            latency_ms = (self._clock() - started) * 1000.0
            return reply_from_openai(
                data, engine=self.name, default_model=self.model, latency_ms=latency_ms
            )

    async def close(self) -> None:
        self._closed = True
        if self._owns_http:
            await self._http.aclose()

    def request_body(
        self,
        messages: Sequence[ChatMessage],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        tools: Sequence[ToolSpec] | None = None,
        tool_choice: ToolChoice | None = None,
        response_schema: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The request JSON. `tool_choice` is sent only along with tools: OpenAI refuses a
        `tool_choice` without `tools` (HTTP 400)."""
        body: dict[str, Any] = {**self.extra_body, "model": self.model}
        body["messages"] = messages_to_openai(messages)
        max_tokens = max_tokens if max_tokens is not None else self.max_tokens
        if max_tokens is not None:
            body[self.max_tokens_field] = max_tokens
        temperature = temperature if temperature is not None else self.temperature
        if temperature is not None:
            body["temperature"] = temperature
        if tools:
            body["tools"] = [tool_to_openai(tool) for tool in tools]
            if tool_choice is not None:
                body["tool_choice"] = tool_choice
        if response_schema is not None:
            body["response_format"] = response_format_for(response_schema)
        return body

    # --- One attempt -----------------------------------------------------------------------

    async def _attempt(self, body: dict[str, Any], timeout_s: float) -> Any:
        headers = {"Accept": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        try:
            # asyncio.timeout as well as httpx's: not every transport (ASGITransport) enforces
            # httpx timeouts, and httpx's are per phase, not for the whole exchange.
            async with asyncio.timeout(timeout_s):
                response = await self._http.post(
                    self.url, json=body, headers=headers, timeout=timeout_s
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise LLMTimeout(
                f"no answer within {timeout_s:.3g} s", engine=self.name, details=self.url
            ) from exc
        except httpx.TransportError as exc:
            raise LLMUnavailable(
                f"cannot reach {self.url}: {type(exc).__name__}", engine=self.name, details=str(exc)
            ) from exc
        if not 200 <= response.status_code < 300:
            raise error_for_response(response, engine=self.name)
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise LLMBadResponse(
                "response is not JSON",
                engine=self.name,
                status_code=response.status_code,
                details=response.text[:200],
            ) from exc

    def _wait_before_retry(self, exc: LLMError, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None to give up and raise `exc`."""
        if not exc.is_transient or attempt > self.max_retries:
            return None
        if exc.retry_after is not None and exc.retry_after > self.max_retry_after_s:
            return None
        return self.backoff.delay(attempt, exc.retry_after, self._rng)


def error_for_response(response: httpx.Response, *, engine: str) -> LLMError:
    """The typed error for a non-2xx answer, with the server's message when it sent one."""
    status = response.status_code
    message, code = _server_message(response)
    text = f"HTTP {status} from the server" + (f": {message}" if message else "")
    retry_after = parse_retry_after(response.headers)
    kwargs: dict[str, Any] = {"engine": engine, "status_code": status, "details": code}
    if status == 429:
        return LLMRateLimited(text, retry_after=retry_after, **kwargs)
    if status == 408:
        return LLMTimeout(text, **kwargs)
    if status == 409 or status >= 500:
        return LLMUnavailable(text, retry_after=retry_after, **kwargs)
    if 400 <= status < 500:
        if looks_like_context_too_long(message, code):
            return LLMContextTooLong(text, **kwargs)
        return LLMBadRequest(text, **kwargs)
    return LLMBadResponse(text, **kwargs)  # 1xx / 3xx: not a chat-completions server


def _server_message(response: httpx.Response) -> tuple[str | None, str | None]:
    """OpenAI sends {"error": {"message", "code"}}; vLLM and others a flat {"message"}."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = response.text.strip()
        return (text[:200] or None, None)
    if not isinstance(data, dict):
        return (None, None)
    error = data.get("error")
    source = error if isinstance(error, dict) else data
    message = source.get("message")
    if not isinstance(message, str) and isinstance(error, str):
        message = error  # Ollama: {"error": "model 'x' not found"}
    code = source.get("code")
    return (
        message if isinstance(message, str) else None,
        str(code) if isinstance(code, (str, int)) else None,
    )
