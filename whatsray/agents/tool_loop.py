"""The bounded tool-calling loop of one agent turn.

LLM call with the agent's tools -> run each tool call (validated, permission-checked, timed out)
-> results back to the model -> ... until the model answers without a tool call. Bounds:
`max_tool_steps` model rounds that may call tools, and `turn_timeout_s` for the loop. A model's
own mistakes (unknown tool, malformed JSON, arguments breaking the schema) go back to it as the
tool result once; after a second one, or when steps or time run out, or after a handoff, the model
is called one last time without tools (`tool_choice="none"`) for a plain reply.

Every call is reported to the session's `ToolCallJournal` (`started` before it runs, `finished`
after), so a turn cancelled in the middle still has every started call in the journal, and the
session gives it the result `cancelled`. See docs/tools.md.

Two additions for the scheduling tools: an agent with a `clock` tool (the reminder tools) gets the
current date and time in the default zone appended to its system prompt, so that "tomorrow at 9"
can be resolved; and a turn whose last message is exactly a tool's slash command (`/subscribe`)
runs that tool without the model and answers its `command_reply`. `first_tool_choice: required`
makes the first model round call a tool (constrained decoding on engines that support it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from whatsray import metrics
from whatsray.agents.config import AgentSpec
from whatsray.llm import ChatEngine, ChatMessage, ChatReply, LLMError, LLMTimeout, ToolSpec, Usage
from whatsray.llm import ToolCall as ModelToolCall
from whatsray.llm.metering import metered
from whatsray.session.turns import CANCELLED, ToolCall, ToolCallJournal, ToolCallStatus
from whatsray.tools import (
    Tool,
    ToolContext,
    ToolOutcome,
    ToolRegistry,
    clock_note,
    error_result,
    run_tool_call,
)

__all__ = ["LoopResult", "ToolLoop", "earlier_call_messages"]

log = logging.getLogger(__name__)

# Why the loop stopped offering tools before the model was done with them.
STOP_STEPS = "steps"
STOP_TIME = "time"
STOP_BAD_CALLS = "bad_calls"
STOP_HANDOFF = "handoff"

_MAX_BAD_CALLS = 2  # the first one goes back to the model; the second ends tool use
_CANCELLED_FOR_MODEL = error_result(
    "cancelled: the user wrote again while this ran, so it was stopped; it may or may not "
    "have taken effect"
)


@dataclass
class LoopResult:
    """What the loop produced. `text` is None when the engine failed (`error` says how)."""

    text: str | None = None
    error: str | None = None
    error_type: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    handoff_reason: str | None = None
    stopped: str | None = None  # STOP_*: why tools were withdrawn, None if the model finished
    engine_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    engine: str | None = None
    model: str | None = None
    finish_reason: str | None = None

    @property
    def usage(self) -> Usage:
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)


def earlier_call_messages(calls: Sequence[ToolCall], prefix: str) -> list[ChatMessage]:
    """Tool calls of an interrupted attempt as an assistant message and its results, so the
    rerun's model knows what already ran (a message already sent, say). Ids: `prefix` + n."""
    if not calls:
        return []
    model_calls = [
        ModelToolCall(id=f"{prefix}{i}", name=c.name, arguments_json=c.arguments or "{}")
        for i, c in enumerate(calls, start=1)
    ]
    out = [ChatMessage.assistant("", model_calls)]
    for model_call, call in zip(model_calls, calls, strict=True):
        cancelled = call.status is ToolCallStatus.CANCELLED or call.result is None
        result = _CANCELLED_FOR_MODEL if cancelled else (call.result or CANCELLED)
        out.append(ChatMessage.tool(result, model_call.id, call.name))
    return out


class ToolLoop:
    """One turn's conversation with the model. Built per turn; not reused."""

    def __init__(
        self,
        spec: AgentSpec,
        engine: ChatEngine,
        registry: ToolRegistry,
        journal: ToolCallJournal,
        context: ToolContext | None,
        *,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.spec = spec
        self.engine = engine
        self.registry = registry
        self.journal = journal
        self.context = context  # None: no tools this turn
        self._monotonic = monotonic
        self._used_ids: set[str] = set()
        self._calls = 0
        self._bad_calls = 0
        self.result = LoopResult()

    @property
    def specs(self) -> tuple[ToolSpec, ...]:
        if self.context is None or not self.spec.tools:
            return ()
        return self.registry.specs(self.spec.tools)

    def reserve_ids(self, messages: Sequence[ChatMessage]) -> None:
        """Ids already in the conversation (earlier attempts) that new calls must not reuse."""
        for message in messages:
            self._used_ids.update(call.id for call in message.tool_calls)

    async def run(self, messages: list[ChatMessage]) -> LoopResult:
        spec, result = self.spec, self.result
        specs = self.specs
        offer = bool(specs)
        started = self._monotonic()
        deadline = started + spec.turn_timeout_s
        steps = 0
        try:
            if offer:
                command = self._command(messages)
                if command is not None:
                    await self._run_command(command, deadline)
                    return result
                self._add_clock(messages)
            while True:
                # Budget-limited only while tools are offered: the closing call gets timeout_s.
                timeout = spec.timeout_s
                if offer:
                    left = deadline - self._monotonic()
                    if left <= 0:
                        offer, result.stopped = False, STOP_TIME
                    timeout = min(timeout, left) if offer else timeout
                required = offer and steps == 0 and spec.first_tool_choice == "required"
                try:
                    reply = await self._chat(messages, specs, offer, timeout, required=required)
                except Exception as exc:
                    if offer and timeout < spec.timeout_s and _is_timeout(exc):
                        offer, result.stopped = False, STOP_TIME  # the budget, not the engine
                        continue
                    self._failed(exc, timeout)
                    return result
                if not offer or not reply.tool_calls:
                    result.text = reply.content
                    return result
                steps += 1
                calls = self._unique(reply.tool_calls)
                messages.append(ChatMessage.assistant(reply.content, calls))
                for call in calls:
                    outcome = await self._run_call(call, steps, deadline)
                    messages.append(ChatMessage.tool(outcome.result, call.id, call.name))
                offer, result.stopped = self._keep_offering(steps, deadline)
        finally:
            result.latency_ms = (self._monotonic() - started) * 1000.0
            if self.context is not None:
                result.handoff_reason = self.context.effects.handoff_reason

    def _command(self, messages: Sequence[ChatMessage]) -> Tool | None:
        """The agent's tool whose slash command the turn's last message is, if any."""
        if not messages or messages[-1].role != "user":
            return None
        return self.registry.command_tool(self.spec.tools, messages[-1].content)

    async def _run_command(self, tool: Tool, deadline: float) -> None:
        """A slash command: its tool runs with no arguments, without the model; the user gets
        the tool's `command_reply`, or what went wrong."""
        [call] = self._unique([ModelToolCall(id="command", name=tool.name, arguments_json="{}")])
        outcome = await self._run_call(call, 0, deadline)
        if outcome.ok:
            self.result.text = tool.command_reply
        else:
            self.result.text = f"Sorry, that did not work: {_error_of(outcome.result)}"

    def _add_clock(self, messages: list[ChatMessage]) -> None:
        """Today's date and time in the default zone, for agents with clock tools."""
        if self.context is None or not any(self.registry[n].clock for n in self.spec.tools):
            return
        note = clock_note(self.context.now(), self.context.services.default_timezone)
        if messages and messages[0].role == "system":
            messages[0] = ChatMessage.system(f"{messages[0].content}\n\n{note}")
        else:
            messages.insert(0, ChatMessage.system(note))

    def _keep_offering(self, steps: int, deadline: float) -> tuple[bool, str | None]:
        if self.context is not None and self.context.effects.handoff:
            return False, STOP_HANDOFF  # the chat is a person's now: just say so
        if self._bad_calls >= _MAX_BAD_CALLS:
            return False, STOP_BAD_CALLS
        if steps >= self.spec.max_tool_steps:
            return False, STOP_STEPS
        if self._monotonic() >= deadline:
            return False, STOP_TIME
        return True, None

    async def _chat(
        self,
        messages: list[ChatMessage],
        specs: tuple[ToolSpec, ...],
        offer: bool,
        limit_s: float,
        *,
        required: bool = False,
    ) -> ChatReply:
        spec, result = self.spec, self.result
        result.engine_calls += 1
        options: dict[str, Any] = {"tools": specs or None}
        if specs and not offer:  # an agent with tools, asked for its closing reply
            options = {"tools": None, "tool_choice": "none"}
        elif required:  # `first_tool_choice: required`: the reply must call a tool
            options = {"tools": specs, "tool_choice": "required"}
        # Without tool_choice in `options`, engines (and fakes) that predate it still work.
        name = getattr(self.engine, "name", None) or "unknown"
        started = time.perf_counter()
        async with asyncio.timeout(limit_s):
            reply = await metered(
                name,
                self.engine.chat(
                    messages,
                    max_tokens=spec.max_tokens,
                    temperature=spec.temperature,
                    timeout_s=limit_s,
                    **options,
                ),
            )
        metrics.turn_stage_seconds.observe(time.perf_counter() - started, stage="llm")
        result.prompt_tokens += reply.usage.prompt_tokens
        result.completion_tokens += reply.usage.completion_tokens
        result.engine = reply.engine or getattr(self.engine, "name", None)
        result.model = reply.model or None
        result.finish_reason = reply.finish_reason
        return reply

    def _failed(self, exc: Exception, timeout: float) -> None:
        result = self.result
        if isinstance(exc, TimeoutError) and not isinstance(exc, LLMError):
            result.error = f"no answer within {timeout:g} s"
        else:
            result.error = str(exc) or type(exc).__name__
        result.error_type = type(exc).__name__
        result.engine = result.engine or getattr(self.engine, "name", None)
        log_call = log.warning if isinstance(exc, LLMError | TimeoutError) else log.exception
        turn = self.context.turn_id if self.context is not None else "?"
        log_call("agent %s: engine failed in turn %s: %s", self.spec.name, turn, result.error)

    def _unique(self, calls: Sequence[ModelToolCall]) -> list[ModelToolCall]:
        """The model's calls with ids unique in this turn (models reuse `call_1` every round,
        and the journal, the store and the tool messages need to tell them apart)."""
        out = []
        for call in calls:
            call_id = call.id or f"call_{len(self._used_ids) + 1}"
            while call_id in self._used_ids:
                call_id = f"{call.id or 'call'}_{len(self._used_ids) + 1}"
            self._used_ids.add(call_id)
            out.append(call if call_id == call.id else call.model_copy(update={"id": call_id}))
        return out

    async def _run_call(self, call: ModelToolCall, step: int, deadline: float) -> ToolOutcome:
        assert self.context is not None  # tools are offered only with a context
        index = self._calls
        self._calls += 1
        self.journal.started(call.id, call.name, call.arguments_json)
        left = deadline - self._monotonic()
        if left <= 0:
            outcome = ToolOutcome(error_result("not run: the turn's time is up"), ok=False)
        else:
            started = time.perf_counter()
            outcome = await run_tool_call(
                self.registry,
                self.spec.tools,
                call.name,
                call.arguments_json,
                self.context.for_call(index, step),
                timeout_s=min(self.spec.tool_timeout_s, left),
            )
            metrics.turn_stage_seconds.observe(time.perf_counter() - started, stage="tools")
        self.journal.finished(call.id, outcome.result, error=not outcome.ok)
        status = ToolCallStatus.OK if outcome.ok else ToolCallStatus.ERROR
        self.result.tool_calls.append(
            ToolCall(call.id, call.name, call.arguments_json, outcome.result, status)
        )
        if outcome.bad_call:
            self._bad_calls += 1
            log.info(
                "agent %s: bad tool call %s in turn %s: %s",
                self.spec.name, call.name, self.context.turn_id, _error_of(outcome.result),
            )  # fmt: skip
        return outcome


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError | LLMTimeout)


def _error_of(result: str) -> str:
    try:
        value = json.loads(result)
    except ValueError:
        return result
    return str(value.get("error", result)) if isinstance(value, dict) else result
