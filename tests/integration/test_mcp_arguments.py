"""The MCP tools called with wrong types, missing and extra arguments, over a real transport.

The MCP server is the real command (`python -m whatsray.cli mcp stdio`, started by the SDK's
client) in front of the deployment of tests/integration/test_mcp_server.py: the admin router
over a real DuckDB `Store` and `Outbox`, and a stand-in jobs API that records every request.
Every bad call is a tool error that names the argument and what is wrong with it (never the
SDK's generic "Error executing tool"), nothing reaches the REST API, and the server still
answers good calls afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, TextContent

from tests.support.admin_stack import Admin
from tests.support.fake_jobs_api import FakeJobsApi
from tests.support.mcp_deployment import Deployment, mcp_deployment, server_env

pytestmark = pytest.mark.integration

# Valid required arguments of each tool: a test changes one argument at a time.
VALID: dict[str, dict[str, Any]] = {
    "whatsapp_send_message": {"to": "15551230001", "text": "hi"},
    "whatsapp_get_messages": {"chat": "15551230001"},
    "whatsapp_get_chats": {},
    "whatsapp_search_contacts": {"q": "ana"},
    "cronjob_create": {
        "name": "x",
        "chat": "15551230001",
        "payload": "call mom",
        "trigger": {"type": "interval", "seconds": 60},
    },
    "cronjob_list": {},
    "cronjob_get": {"job_id": "job-1"},
    "cronjob_update": {"job_id": "job-1", "name": "y"},
    "cronjob_delete": {"job_id": "job-1"},
    "cronjob_start": {"job_id": "job-1"},
    "cronjob_stop": {"job_id": "job-1"},
}
# One value of each JSON type, and the type's name in the tools' input schemas.
WRONG_VALUES: list[tuple[Any, str]] = [
    ("seven", "string"),
    (7, "integer"),
    (1.5, "number"),
    (True, "boolean"),
    (None, "null"),
    ([], "array"),
    ({}, "object"),
]


class Mcp:
    def __init__(self, client: Client, admin: Admin, jobs: FakeJobsApi) -> None:
        self.client, self.admin, self.jobs = client, admin, jobs

    async def refused(self, tool: str, arguments: dict[str, Any], *words: str) -> str:
        result = await self.client.call_tool(tool, arguments)
        text = _text(result)
        assert result.is_error, (tool, arguments, text)
        assert text.startswith(f"invalid arguments for {tool}: "), (arguments, text)
        assert "Nothing was sent to whatsray" in text, text
        for word in words:
            assert word in text, (tool, arguments, word, text)
        return text


def _text(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    async with mcp_deployment(tmp_path) as deployment:
        yield deployment


@asynccontextmanager
async def mcp_stdio(deployment: Deployment) -> AsyncIterator[Mcp]:
    """`whatsray mcp stdio` in a subprocess, with the SDK's client connected to it."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "whatsray.cli", "mcp", "stdio"],
        env=server_env(deployment),
        cwd=deployment.tmp_path,
    )
    async with Client(params) as client:
        yield Mcp(client, deployment.admin, deployment.jobs)


async def _nothing_reached_the_api(mcp: Mcp) -> None:
    assert mcp.jobs.requests == []
    assert await mcp.admin.store.count_outbound() == 0
    assert mcp.admin.emulator.outbound() == []


CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("whatsapp_send_message", {"text": "hi"}, ["argument 'to' is required"]),
    ("whatsapp_send_message", {}, ["argument 'to' is required", "argument 'text' is required"]),
    (
        "whatsapp_send_message",
        {"to": 15551230001, "text": "hi"},
        ["argument 'to'", "valid string", "got an integer"],
    ),
    (
        "whatsapp_send_message",
        {"to": "15551230001", "text": "hi", "priority": "high"},
        ["unknown argument 'priority'", "it takes to, text, idempotency_key"],
    ),
    (
        "whatsapp_get_messages",
        {"chat": "15551230001", "limit": "ten"},
        ["argument 'limit'", "valid integer", "got a string"],
    ),
    ("whatsapp_get_chats", {"limit": True}, ["argument 'limit'", "got a boolean"]),
    ("whatsapp_get_chats", {"page": 2}, ["unknown argument 'page'", "limit, offset"]),
    ("whatsapp_search_contacts", {"query": "ana"}, ["unknown argument 'query'", "'q' is required"]),
    (
        "cronjob_create",
        {**VALID["cronjob_create"], "payload": 5, "trigger": "daily"},
        ["argument 'payload'", "got an integer", "argument 'trigger'", "got a string"],
    ),
    (
        "cronjob_create",
        {key: v for key, v in VALID["cronjob_create"].items() if key != "trigger"},
        ["argument 'trigger' is required"],
    ),
    ("cronjob_list", {"kind": 5}, ["argument 'kind'", "got an integer"]),
    ("cronjob_get", {"id": "job-1"}, ["unknown argument 'id'", "argument 'job_id' is required"]),
    ("cronjob_update", {"job_id": "job-1", "enabled": False}, ["unknown argument 'enabled'"]),
    ("cronjob_delete", {"job_id": ["job-1"]}, ["argument 'job_id'", "got an array"]),
    ("cronjob_stop", {"job_id": "job-1", "now": True}, ["unknown argument 'now'"]),
]


async def test_bad_arguments_are_tool_errors_naming_the_argument(deployment: Deployment) -> None:
    async with mcp_stdio(deployment) as mcp:
        for tool, arguments, words in CASES:
            await mcp.refused(tool, arguments, *words)
        await _nothing_reached_the_api(mcp)
        # The server is still there and answers a good call.
        chats = await mcp.client.call_tool("whatsapp_get_chats", {})
    assert not chats.is_error and chats.structured_content is not None, _text(chats)


async def test_every_argument_of_every_tool_refuses_a_value_of_the_wrong_type(
    deployment: Deployment,
) -> None:
    async with mcp_stdio(deployment) as mcp:
        await _every_wrong_type(mcp)


async def _every_wrong_type(mcp: Mcp) -> None:
    tools = (await mcp.client.list_tools()).tools
    assert sorted(tool.name for tool in tools) == sorted(VALID)
    tried = 0
    for tool in tools:
        for argument, schema in tool.input_schema["properties"].items():
            allowed = {option.get("type") for option in schema.get("anyOf", [schema])}
            if "number" in allowed:
                allowed.add("integer")
            for value, json_type in WRONG_VALUES:
                if json_type in allowed:
                    continue
                arguments = {**VALID[tool.name], argument: value}
                await mcp.refused(tool.name, arguments, f"argument '{argument}'")
                tried += 1
    assert tried > 100  # 11 tools, every argument, every JSON type it does not take
    await _nothing_reached_the_api(mcp)
