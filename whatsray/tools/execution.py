"""Running one tool call the model asked for: find the tool, parse and validate the arguments,
check permissions, run it with a timeout, and turn whatever happened into text for the model.

Nothing here raises for a bad call or a failing tool (only cancellation propagates): the outcome
says what went wrong, and the agent's loop decides what to do about it (docs/tools.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from whatsray.tools.base import ToolContext, ToolError, ToolOutput
from whatsray.tools.registry import ToolRegistry

__all__ = ["ToolOutcome", "error_result", "output_text", "run_tool_call"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """`result` is the text the model reads. `ok` is False for any error; `bad_call` marks the
    model's own mistakes (unknown tool, malformed JSON, arguments that break the schema), which
    the loop tolerates once per turn."""

    result: str
    ok: bool = True
    bad_call: bool = False


def error_result(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


def output_text(output: ToolOutput) -> str:
    """A tool's return value as the text the model reads: text as is, anything else as JSON."""
    if isinstance(output, str):
        return output
    if isinstance(output, BaseModel):
        return output.model_dump_json()
    data = dict(output) if isinstance(output, Mapping) else list(output)
    return json.dumps(data, ensure_ascii=False, default=str)


def _fail(message: str, *, bad_call: bool = False) -> ToolOutcome:
    return ToolOutcome(error_result(message), ok=False, bad_call=bad_call)


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "arguments"
        message = "unknown argument" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


async def run_tool_call(
    registry: ToolRegistry,
    allowed: Collection[str],
    name: str,
    arguments_json: str,
    ctx: ToolContext,
    *,
    timeout_s: float | None,
) -> ToolOutcome:
    """Run `name(arguments_json)` if it is one of the agent's `allowed` tools."""
    tool = registry.get(name) if name in allowed else None
    if tool is None:
        available = ", ".join(allowed) or "none"
        return _fail(f"unknown tool {name!r}; available tools: {available}", bad_call=True)
    try:
        raw: Any = json.loads(arguments_json.strip() or "{}")
    except json.JSONDecodeError as exc:
        return _fail(
            f"the arguments are not valid JSON ({exc.msg} at position {exc.pos}); "
            "send a JSON object",
            bad_call=True,
        )
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        return _fail("the arguments must be a JSON object", bad_call=True)
    try:
        args = tool.arguments.model_validate(raw)
    except ValidationError as exc:
        return _fail(f"invalid arguments: {_describe(exc)}", bad_call=True)
    missing = sorted(tool.permissions - ctx.permissions)
    if missing:  # config validation prevents this; a custom registry might not
        return _fail(f"permission denied: {name} needs {', '.join(missing)}")
    try:
        async with asyncio.timeout(timeout_s):
            output = await tool.function(args, ctx)
        return ToolOutcome(output_text(output))
    except ToolError as exc:
        return _fail(str(exc) or type(exc).__name__)
    except TimeoutError:
        return _fail(f"no result within {timeout_s:g} s")
    except Exception as exc:  # a tool bug must not crash the turn; the model reads that it failed
        log.exception("tool %s failed in turn %s", name, ctx.turn_id)
        return _fail(f"the tool failed ({type(exc).__name__}: {exc})")
