"""A fake OpenAI-compatible chat-completions server (a small Starlette app) for engine tests.

Each request takes the next scripted action from a queue; with the queue empty it completes
with "echo: <last user message>". It records every request body and its headers. Use it
in-process through `httpx.ASGITransport`, or over loopback with `serve_on_loopback`.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


@dataclass(frozen=True)
class Complete:
    content: str | None = "hello"
    tool_calls: list[dict[str, Any]] | None = None
    usage: dict[str, int] | None = field(
        default_factory=lambda: {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    )
    finish_reason: str = "stop"
    model: str = "fake-model"


@dataclass(frozen=True)
class Status:
    """Answer with this HTTP status and body (a dict is sent as JSON)."""

    code: int
    body: dict[str, Any] | str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Raw:
    """Answer 200 with this exact body (garbage JSON, a non-completion object...)."""

    body: str
    media_type: str = "application/json"


@dataclass(frozen=True)
class Hang:
    """Do not answer until `FakeOpenAI.release()` (or `max_s` passes)."""

    max_s: float = 10.0


Action = Complete | Status | Raw | Hang


class FakeOpenAI:
    def __init__(self, *actions: Action, api_prefix: str = "/v1") -> None:
        self.actions: deque[Action] = deque(actions)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        # A threading.Event: the server may run in uvicorn's thread, the test in another.
        self._released = threading.Event()
        self.app = Starlette(
            routes=[Route(f"{api_prefix}/chat/completions", self._completions, methods=["POST"])]
        )

    def then(self, *actions: Action) -> FakeOpenAI:
        self.actions.extend(actions)
        return self

    def release(self) -> None:
        self._released.set()

    @property
    def count(self) -> int:
        return len(self.requests)

    async def _completions(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        self.paths.append(request.url.path)
        action = self.actions.popleft() if self.actions else None
        if action is None:
            return JSONResponse(_completion(Complete(content="echo: " + _last_user(body)), body))
        if isinstance(action, Complete):
            return JSONResponse(_completion(action, body))
        if isinstance(action, Status):
            if isinstance(action.body, dict):
                return JSONResponse(action.body, action.code, headers=action.headers)
            return PlainTextResponse(action.body, action.code, headers=action.headers)
        if isinstance(action, Raw):
            return Response(action.body, 200, media_type=action.media_type)
        await asyncio.to_thread(self._released.wait, action.max_s)
        return JSONResponse(_completion(Complete(content="too late"), body))


def _completion(action: Complete, request: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": action.content}
    if action.tool_calls is not None:
        message["tool_calls"] = action.tool_calls
    out: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": action.model,
        "system_fingerprint": "fp_fake",  # unknown to the reader: must be ignored
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": action.finish_reason,
                "logprobs": None,
            }
        ],
    }
    if action.usage is not None:
        out["usage"] = action.usage
    return out


def _last_user(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return str(message.get("content") or "")
    return ""
