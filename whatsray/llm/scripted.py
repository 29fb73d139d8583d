"""A deterministic engine for tests, benchmarks and demos: no model, no network.

It answers from a script (a list of replies, or a function of the messages), records every
call, and can be told to fail or to wait on the Nth call, so that tests drive error paths and
in-flight states (interrupts, timeouts) without timing tricks.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeAlias

from whatsray.llm.protocol import (
    ChatMessage,
    ChatReply,
    LLMError,
    LLMTimeout,
    LLMUnavailable,
    ToolCall,
    ToolChoice,
    ToolSpec,
    Usage,
)

# A scripted reply: plain text, a full ChatReply (for tool calls), a mapping in config form
# ({"content": ..., "tool_calls": [{"name", "arguments"}]}), or an exception to raise.
ScriptItem: TypeAlias = str | ChatReply | Mapping[str, Any] | BaseException
Responder: TypeAlias = Callable[
    [Sequence[ChatMessage]],
    str | ChatReply | Mapping[str, Any] | Awaitable[str | ChatReply | Mapping[str, Any]],
]
Gate: TypeAlias = asyncio.Event | float  # wait for the event to be set, or sleep this long


class ScriptExhausted(LLMError):
    """The scripted replies ran out: the code under test called the engine more than planned."""


@dataclass(frozen=True)
class ScriptedCall:
    """One recorded call. `number` counts from 1. The engine records `tool_choice` and
    `response_schema` but does not enforce them: the script decides what comes back, so tests
    can feed the caller invalid answers on purpose."""

    number: int
    messages: tuple[ChatMessage, ...]
    max_tokens: int | None
    temperature: float | None
    tools: tuple[ToolSpec, ...]
    timeout_s: float | None
    tool_choice: ToolChoice | None = None
    response_schema: Mapping[str, Any] | None = None


class ScriptedEngine:
    """Answers from `replies` in order (then raises `ScriptExhausted`, or starts over when
    `cycle=True`), or from `responder(messages)` when given (`echo`, `KeywordRules`, your own).

    `fail_on={3: LLMUnavailable(...)}` raises on the 3rd call; `delay_on={2: event}` makes the
    2nd call wait until `event` is set (or sleep N seconds through the injected `sleep`);
    `latency_s` makes every other call sleep that long (a slow model, for demos and crash tests).
    A call's `timeout_s` bounds that wait, raising `LLMTimeout` as a real engine would.
    """

    def __init__(
        self,
        replies: Iterable[ScriptItem] | None = None,
        *,
        responder: Responder | None = None,
        cycle: bool = False,
        fail_on: Mapping[int, BaseException] | None = None,
        delay_on: Mapping[int, Gate] | None = None,
        name: str = "scripted",
        model: str = "scripted",
        latency_s: float = 0.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if replies is not None and responder is not None:
            raise ValueError("give either replies or a responder, not both")
        self.name = name
        self.model = model
        self.calls: list[ScriptedCall] = []
        self._replies = list(replies) if replies is not None else None
        # Neither given: echo, the most useful default for a pipeline under test.
        self._responder = echo() if replies is None and responder is None else responder
        self._cycle = cycle
        self._fail_on = dict(fail_on or {})
        self._delay_on = dict(delay_on or {})
        self._sleep = sleep
        self._latency_s = latency_s  # every call takes this long, like a model would
        self._closed = False
        self._in_flight = 0
        self._changed: asyncio.Condition | None = None

    # --- Steering ----------------------------------------------------------------------------

    def fail_call(self, number: int, error: BaseException) -> None:
        """Raise `error` on call `number` (1-based, counting every call so far)."""
        self._fail_on[number] = error

    def delay_call(self, number: int, gate: Gate) -> None:
        self._delay_on[number] = gate

    @property
    def call_count(self) -> int:
        return len(self.calls)

    @property
    def in_flight(self) -> int:
        """Calls started and not finished (waiting on a gate, typically)."""
        return self._in_flight

    async def wait_for_calls(self, count: int) -> None:
        """Return once at least `count` calls have started (e.g. to act mid-call)."""
        condition = self._condition()
        async with condition:
            await condition.wait_for(lambda: len(self.calls) >= count)

    # --- ChatEngine --------------------------------------------------------------------------

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
        call = ScriptedCall(
            number=len(self.calls) + 1,
            messages=tuple(messages),
            max_tokens=max_tokens,
            temperature=temperature,
            tools=tuple(tools or ()),
            timeout_s=timeout_s,
            tool_choice=tool_choice,
            response_schema=response_schema,
        )
        self.calls.append(call)
        await self._notify()
        self._in_flight += 1
        try:
            gate = self._delay_on.get(call.number, self._latency_s or None)
            if gate is not None:
                await self._wait(gate, timeout_s)
            error = self._fail_on.get(call.number)
            if error is not None:
                raise error
            return await self._answer(call)
        finally:
            self._in_flight -= 1

    async def close(self) -> None:
        self._closed = True

    # --- Internals ---------------------------------------------------------------------------

    async def _answer(self, call: ScriptedCall) -> ChatReply:
        if self._responder is not None:
            produced = self._responder(call.messages)
            item: ScriptItem = await produced if inspect.isawaitable(produced) else produced
        else:
            item = self._next_reply(call.number)
        if isinstance(item, BaseException):
            raise item
        reply = scripted_reply(item)
        return reply.model_copy(
            update={
                "engine": self.name,
                "model": reply.model or self.model,
                "usage": reply.usage if reply.usage.total_tokens else _word_usage(call, reply),
                "finish_reason": reply.finish_reason
                or ("tool_calls" if reply.tool_calls else "stop"),
            }
        )

    def _next_reply(self, number: int) -> ScriptItem:
        replies = self._replies or []
        index = number - 1
        if self._cycle and replies:
            index %= len(replies)
        if index >= len(replies):
            raise ScriptExhausted(
                f"call {number} but only {len(replies)} scripted replies", engine=self.name
            )
        return replies[index]

    async def _wait(self, gate: Gate, timeout_s: float | None) -> None:
        waiting = gate.wait() if isinstance(gate, asyncio.Event) else self._sleep(gate)
        try:
            async with asyncio.timeout(timeout_s):
                await waiting
        except TimeoutError:
            raise LLMTimeout(f"no answer within {timeout_s} s", engine=self.name) from None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def _notify(self) -> None:
        condition = self._condition()
        async with condition:
            condition.notify_all()


def scripted_reply(item: str | ChatReply | Mapping[str, Any]) -> ChatReply:
    """Turn a script item into a reply; a mapping may list tool calls with `arguments` as an
    object or as JSON text (ids default to call_1, call_2...)."""
    if isinstance(item, ChatReply):
        return item
    if isinstance(item, str):
        return ChatReply(content=item)
    calls = []
    for index, raw in enumerate(item.get("tool_calls") or (), start=1):
        arguments = raw.get("arguments", {})
        calls.append(
            ToolCall(
                id=str(raw.get("id") or f"call_{index}"),
                name=str(raw["name"]),
                arguments_json=arguments if isinstance(arguments, str) else json.dumps(arguments),
            )
        )
    return ChatReply(
        content=str(item.get("content") or ""),
        tool_calls=tuple(calls),
        finish_reason=item.get("finish_reason"),
    )


def _word_usage(call: ScriptedCall, reply: ChatReply) -> Usage:
    """Deterministic, non-zero token counts (words), so token accounting can be tested."""
    prompt = sum(len(m.content.split()) for m in call.messages)
    completion = len(reply.content.split()) + len(reply.tool_calls)
    return Usage(prompt_tokens=max(1, prompt), completion_tokens=max(1, completion))


# --- Ready-made responders -----------------------------------------------------------------


def pending_user_text(messages: Sequence[ChatMessage]) -> str:
    """The user messages after the last assistant message, one per line (a coalesced turn)."""
    pending: list[str] = []
    for message in reversed(messages):
        if message.role == "assistant":
            break
        if message.role == "user":
            pending.append(message.content)
    return "\n".join(reversed(pending))


def echo(prefix: str = "echo: ") -> Callable[[Sequence[ChatMessage]], str]:
    """Answers `prefix` + the user's pending messages: predictable replies for pipeline tests."""

    def respond(messages: Sequence[ChatMessage]) -> str:
        return prefix + pending_user_text(messages)

    return respond


class KeywordRules:
    """The first rule whose regex (case-insensitive) matches the user's pending text answers;
    otherwise `default`. Rules are `(pattern, reply)` pairs, or `(pattern, reply, tool_calls)`
    triples, checked in order.

    A rule with tool calls answers them first (`{"name", "arguments"}` each); once the results
    are in (the last message is a tool result) the same rule answers its `reply`. Replies and
    string arguments may hold placeholders, so a script reads the prompt as a model would:
    `{user}` (the user's text), `{knowledge}` (the answer of the first FAQ entry in the system
    prompt), `{tool_result}` (the last tool result), `{now+2h}` / `{now+30m}` / `{now+1d}`
    (the prompt's "Current date and time" plus that much, as `2026-11-23T09:00`)."""

    def __init__(
        self,
        rules: Sequence[tuple[str, str] | tuple[str, str, Sequence[Mapping[str, Any]]]],
        default: str = "I don't know.",
    ) -> None:
        self.rules = [
            (re.compile(rule[0], re.IGNORECASE), rule[1], tuple(rule[2]) if len(rule) > 2 else ())
            for rule in rules
        ]
        self.default = default

    def __call__(self, messages: Sequence[ChatMessage]) -> str | Mapping[str, Any]:
        after_tool = bool(messages) and messages[-1].role == "tool"
        text = _last_user_text(messages) if after_tool else pending_user_text(messages)
        for pattern, reply, tool_calls in self.rules:
            if pattern.search(text):
                if tool_calls and not after_tool:
                    calls = [
                        {**call, "arguments": _fill_args(call.get("arguments", {}), messages)}
                        for call in tool_calls
                    ]
                    return {"content": "", "tool_calls": calls}
                return fill_placeholders(reply, messages, text)
        return fill_placeholders(self.default, messages, text)


def _last_user_text(messages: Sequence[ChatMessage]) -> str:
    """The user messages before the last assistant message (the turn's input, after tools)."""
    index = max((i for i, m in enumerate(messages) if m.role == "assistant"), default=-1)
    return pending_user_text(messages[: index if index >= 0 else len(messages)])


_NOW_LINE = re.compile(r"Current date and time: \w+, (\d{4}-\d{2}-\d{2} \d{2}:\d{2})")
_NOW_PLUS = re.compile(r"\{now(?:\+(\d+)([mhd]))?\}")
_ANSWER = re.compile(r"^\[[^\]]+\].*?\nA: (.*?)(?:\n\n\[|\Z)", re.MULTILINE | re.DOTALL)
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}


def fill_placeholders(text: str, messages: Sequence[ChatMessage], user: str | None = None) -> str:
    """`text` with the placeholders of `KeywordRules` replaced (see there)."""
    if "{" not in text:
        return text
    system = messages[0].content if messages and messages[0].role == "system" else ""
    if "{user}" in text:
        text = text.replace("{user}", pending_user_text(messages) if user is None else user)
    if "{knowledge}" in text:
        found = _ANSWER.search(system)
        text = text.replace("{knowledge}", found.group(1).strip() if found else "")
    if "{tool_result}" in text:
        results = [m.content for m in messages if m.role == "tool"]
        text = text.replace("{tool_result}", results[-1] if results else "")
    now = _NOW_LINE.search(system)
    if now is not None:
        base = datetime.fromisoformat(now.group(1).replace(" ", "T"))

        def later(match: re.Match[str]) -> str:
            amount = int(match.group(1) or 0) * _UNIT_S.get(match.group(2) or "m", 60)
            return (base + timedelta(seconds=amount)).strftime("%Y-%m-%dT%H:%M")

        text = _NOW_PLUS.sub(later, text)
    return text


def _fill_args(arguments: Any, messages: Sequence[ChatMessage]) -> Any:
    if isinstance(arguments, str):
        return fill_placeholders(arguments, messages)
    if isinstance(arguments, Mapping):
        return {key: _fill_args(value, messages) for key, value in arguments.items()}
    if isinstance(arguments, list):
        return [_fill_args(value, messages) for value in arguments]
    return arguments
