"""Tools by name. `BUILTIN_TOOLS` is what agents.yaml may list; `whatsray.agents.config` derives
its known tool names and permissions from it."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator

from whatsray.llm.protocol import ToolSpec
from whatsray.tools.base import Tool
from whatsray.tools.builtin import GET_MESSAGES, HANDOFF_TO_HUMAN, SEARCH_CONTACTS, SEND_MESSAGE
from whatsray.tools.scheduling import (
    CANCEL_REMINDER,
    LIST_REMINDERS,
    SCHEDULE_REMINDER,
    SUBSCRIBE_GREETINGS,
    UNSUBSCRIBE_GREETINGS,
    UPDATE_REMINDER,
)

__all__ = ["BUILTIN_TOOLS", "ToolRegistry"]


class ToolRegistry:
    """An immutable set of tools, in declaration order. Names are unique."""

    __slots__ = ("_tools",)

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"two tools are named {tool.name!r}")
            self._tools[tool.name] = tool

    def with_tools(self, *tools: Tool) -> ToolRegistry:
        """This registry plus `tools` (a name already here is an error)."""
        return ToolRegistry([*self._tools.values(), *tools])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._tools)

    def command_tool(self, names: Collection[str], text: str) -> Tool | None:
        """The tool among `names` whose slash command `text` is (exactly, any case), if any."""
        command = text.strip().lower()
        for name in names:
            tool = self._tools.get(name)
            if tool is not None and tool.command == command:
                return tool
        return None

    @property
    def known_permissions(self) -> frozenset[str]:
        """Every permission a tool here needs or checks: what agents.yaml may grant."""
        out: set[str] = set()
        for tool in self._tools.values():
            out |= tool.permissions | tool.extra_permissions
        return frozenset(out)

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __getitem__(self, name: str) -> Tool:
        tool = self._tools.get(name)
        if tool is None:
            raise KeyError(f"no tool named {name!r} (known: {', '.join(self._tools) or 'none'})")
        return tool

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    def specs(self, names: Collection[str]) -> tuple[ToolSpec, ...]:
        """The specs the model is offered for these tools, in the given order."""
        return tuple(self[name].spec() for name in names)


BUILTIN_TOOLS = ToolRegistry(
    [
        SEND_MESSAGE,
        GET_MESSAGES,
        SEARCH_CONTACTS,
        HANDOFF_TO_HUMAN,
        SCHEDULE_REMINDER,
        LIST_REMINDERS,
        UPDATE_REMINDER,
        CANCEL_REMINDER,
        SUBSCRIBE_GREETINGS,
        UNSUBSCRIBE_GREETINGS,
    ]
)
