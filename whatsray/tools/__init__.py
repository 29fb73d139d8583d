"""Tools agents can call: declared once (`Tool`), listed per agent in agents.yaml, run by the
agent's tool-calling loop with a `ToolContext` the model cannot change. See docs/tools.md."""

from __future__ import annotations

from whatsray.tools.base import (
    Tool,
    ToolArguments,
    ToolContext,
    ToolError,
    ToolFunction,
    ToolOutput,
    ToolPermissionError,
    ToolServices,
    TurnEffects,
)
from whatsray.tools.builtin import (
    GET_MESSAGES,
    HANDOFF_TO_HUMAN,
    MESSAGE_ANY_CHAT,
    READ_ANY_CHAT,
    READ_CONTACTS,
    SEARCH_CONTACTS,
    SEND_MESSAGE,
    handoff_notice,
    resolve_chat,
)
from whatsray.tools.execution import ToolOutcome, error_result, output_text, run_tool_call
from whatsray.tools.outbound import recipient, text_item
from whatsray.tools.registry import BUILTIN_TOOLS, ToolRegistry
from whatsray.tools.scheduling import (
    CANCEL_REMINDER,
    LIST_REMINDERS,
    SCHEDULE_REMINDER,
    SUBSCRIBE_GREETINGS,
    UNSUBSCRIBE_GREETINGS,
    UPDATE_REMINDER,
    clock_note,
    reminder_job_id,
)
from whatsray.tools.services import (
    OptInStore,
    PlatformToolServices,
    ToolOutbox,
    ToolStore,
    UnavailableToolServices,
)

__all__ = [
    "BUILTIN_TOOLS",
    "CANCEL_REMINDER",
    "GET_MESSAGES",
    "HANDOFF_TO_HUMAN",
    "LIST_REMINDERS",
    "MESSAGE_ANY_CHAT",
    "READ_ANY_CHAT",
    "READ_CONTACTS",
    "SCHEDULE_REMINDER",
    "SEARCH_CONTACTS",
    "SEND_MESSAGE",
    "SUBSCRIBE_GREETINGS",
    "UNSUBSCRIBE_GREETINGS",
    "UPDATE_REMINDER",
    "OptInStore",
    "PlatformToolServices",
    "Tool",
    "ToolArguments",
    "ToolContext",
    "ToolError",
    "ToolFunction",
    "ToolOutbox",
    "ToolOutcome",
    "ToolOutput",
    "ToolPermissionError",
    "ToolRegistry",
    "ToolServices",
    "ToolStore",
    "TurnEffects",
    "UnavailableToolServices",
    "clock_note",
    "error_result",
    "handoff_notice",
    "output_text",
    "recipient",
    "reminder_job_id",
    "resolve_chat",
    "run_tool_call",
    "text_item",
]
