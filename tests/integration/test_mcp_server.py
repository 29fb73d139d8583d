"""The MCP server end to end, with the SDK's own client, over both transports.

Behind it runs a real deployment's REST API (tests/support/admin_stack.py: the admin router over
a real DuckDB `Store`, a real `Outbox` sending to the in-process emulator) plus a stand-in jobs
API, served over HTTP on loopback. The MCP server is the real command in a subprocess:
`python -m whatsray.cli mcp stdio` (started by the SDK's stdio client) or `... mcp http --port N`
(reached by the SDK's streamable HTTP client). It knows the deployment only by URL and token.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from tests.support.admin_stack import ADMIN_TOKEN, DAY, PNID, admin_stack
from tests.support.fake_jobs_api import BAD_CRON, FakeJobsApi, Recorded
from tests.support.loop_server import serve_in_loop
from tests.support.mcp_deployment import Deployment, mcp_deployment, server_env
from tests.support.recording_sink import RecordingSink
from tests.support.servers import free_port
from whatsray.mcp import TOOL_NAMES

pytestmark = pytest.mark.integration

TRANSPORTS = ["stdio", "http"]


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[Deployment]:
    async with mcp_deployment(tmp_path) as deployment:
        yield deployment


@asynccontextmanager
async def mcp_http_server(deployment: Deployment, token: str) -> AsyncIterator[str]:
    """`whatsray mcp http` in a subprocess; yields its MCP endpoint URL."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "whatsray.cli",
        "mcp",
        "http",
        "--port",
        str(port),
        env=server_env(deployment, token),
        cwd=deployment.tmp_path,  # no stray .env or data/ from the repository
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        async with httpx.AsyncClient(timeout=1.0) as probe, asyncio.timeout(30):
            while True:
                if process.returncode is not None:
                    raise AssertionError(f"whatsray mcp http exited with {process.returncode}")
                try:
                    await probe.get(url)  # 401 without the token: it is up
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), timeout=15)


@asynccontextmanager
async def mcp_client(
    deployment: Deployment, transport: str, token: str = ADMIN_TOKEN
) -> AsyncIterator[Client]:
    """The SDK's client, connected to the MCP server over `transport`."""
    if transport == "stdio":
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "whatsray.cli", "mcp", "stdio"],
            env=server_env(deployment, token),
            cwd=deployment.tmp_path,
        )
        async with Client(params) as client:
            yield client
        return
    async with mcp_http_server(deployment, token) as url:
        http = httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=300)
        )
        async with http, Client(streamable_http_client(url, http_client=http)) as client:
            yield client


def text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def ok(result: CallToolResult) -> dict[str, Any]:
    """The structured answer of a successful call."""
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    # The text content carries the same JSON, for clients that read only text.
    assert json.loads(text_of(result)) == result.structured_content
    return result.structured_content


def refused(result: CallToolResult, *words: str) -> str:
    """A tool error whose text names each of `words`."""
    assert result.is_error, result
    text = text_of(result)
    for word in words:
        assert word in text, (word, text)
    return text


# --- tools and the 24-hour window -----------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_lists_the_eleven_tools_with_their_schemas(
    deployment: Deployment, transport: str
) -> None:
    async with mcp_client(deployment, transport) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert sorted(tools) == sorted(TOOL_NAMES) and len(tools) == 11
    for tool in tools.values():
        assert tool.description and len(tool.description) > 80, tool.name
        assert tool.input_schema["type"] == "object"
    send = tools["whatsapp_send_message"]
    assert sorted(send.input_schema["required"]) == ["text", "to"]
    assert set(send.input_schema["properties"]) == {
        "to",
        "text",
        "idempotency_key",
        "phone_number_id",
    }
    assert "24" in send.description and "outside_window" in send.description
    assert send.annotations is not None and send.annotations.open_world_hint is True
    read_only = {name for name, tool in tools.items() if tool.annotations.read_only_hint}
    assert read_only == {
        "whatsapp_get_messages",
        "whatsapp_get_chats",
        "whatsapp_search_contacts",
        "cronjob_list",
        "cronjob_get",
    }
    destructive = {name for name, tool in tools.items() if tool.annotations.destructive_hint}
    assert destructive == {"cronjob_delete"}
    assert set(tools["whatsapp_get_messages"].input_schema["properties"]) == {
        "chat",
        "limit",
        "before",
    }
    assert tools["whatsapp_search_contacts"].input_schema["required"] == ["q"]
    create = tools["cronjob_create"].input_schema
    assert {"name", "chat", "payload", "trigger"} <= set(create["required"])
    assert tools["cronjob_get"].input_schema["required"] == ["job_id"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_message_inside_the_window_reaches_the_emulator(
    deployment: Deployment, transport: str
) -> None:
    admin = deployment.admin
    await admin.user_says("15551230001", "hello")
    async with mcp_client(deployment, transport) as client:
        answer = ok(
            await client.call_tool(
                "whatsapp_send_message",
                {"to": "+1 555 123 0001", "text": "Hi from an AI", "idempotency_key": "k-1"},
            )
        )
        assert answer["status"] == "pending" and answer["created"] is True
        assert answer["chat"] == f"{PNID}:15551230001"
        record = await admin.settled(answer["outbound_id"])
        assert record.status in ("sent", "delivered", "read")
        # The same key again: the first message, nothing sent twice.
        again = ok(
            await client.call_tool(
                "whatsapp_send_message",
                {"to": "15551230001", "text": "Hi from an AI", "idempotency_key": "k-1"},
            )
        )
        assert again["created"] is False and again["outbound_id"] == answer["outbound_id"]
    assert admin.accepted_texts("15551230001") == ["Hi from an AI"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_outside_the_window_the_tool_refuses_and_nothing_is_sent(
    deployment: Deployment, transport: str
) -> None:
    admin = deployment.admin
    await admin.user_says("15551230002", "hello")
    admin.clock.advance(DAY + 60)  # the user's window closes for the whole deployment
    async with mcp_client(deployment, transport) as client:
        closed = await client.call_tool(
            "whatsapp_send_message", {"to": "15551230002", "text": "too late"}
        )
        never = await client.call_tool(
            "whatsapp_send_message", {"to": "15551239999", "text": "who are you"}
        )
    refused(closed, "409", "outside_window", "last wrote 24.0 h ago", "Do not retry")
    refused(never, "409", "outside_window", "never written")
    assert admin.emulator.outbound(to="15551230002") == []
    assert admin.emulator.outbound(to="15551239999") == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_messages_chats_and_contacts_come_back_from_the_store(
    deployment: Deployment, transport: str
) -> None:
    admin = deployment.admin
    await admin.user_says("15551230003", "where is my order?", profile_name="Ana Lima")
    admin.clock.advance(1)
    await admin.user_says("15551230004", "hi", profile_name="Bruno")
    chat = f"{PNID}:15551230003"
    async with mcp_client(deployment, transport) as client:
        messages = ok(await client.call_tool("whatsapp_get_messages", {"chat": chat}))
        by_user = ok(await client.call_tool("whatsapp_get_messages", {"chat": "+1 555 123 0003"}))
        chats = ok(await client.call_tool("whatsapp_get_chats", {"limit": 1}))
        second = ok(await client.call_tool("whatsapp_get_chats", {"limit": 1, "offset": 1}))
        contacts = ok(await client.call_tool("whatsapp_search_contacts", {"q": "ana"}))
        missing = await client.call_tool("whatsapp_get_messages", {"chat": "15550000000"})
    assert [(m["direction"], m["text"]) for m in messages["messages"]] == [
        ("in", "where is my order?")
    ]
    assert by_user == messages and messages["chat"] == chat
    assert [c["user"] for c in chats["chats"]] == ["15551230004"]  # most recent first
    assert chats["chats"][0]["window_open"] is True and chats["next_offset"] == 1
    assert [c["user"] for c in second["chats"]] == ["15551230003"]
    assert [(c["chat"], c["profile_name"]) for c in contacts["contacts"]] == [(chat, "Ana Lima")]
    refused(missing, "404", "not_found", "15550000000")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_validation_errors_come_back_with_the_apis_message(
    deployment: Deployment, transport: str
) -> None:
    admin = deployment.admin
    await admin.user_says("15551230005")
    async with mcp_client(deployment, transport) as client:
        bad_to = await client.call_tool("whatsapp_send_message", {"to": "abc", "text": "x"})
        blank = await client.call_tool("whatsapp_search_contacts", {"q": "   "})
        big = await client.call_tool("whatsapp_get_chats", {"limit": 501})
        long_text = await client.call_tool(
            "whatsapp_send_message", {"to": "15551230005", "text": "x" * 4097}
        )
    refused(bad_to, "422", "invalid_request", "body field 'to'", "Fix the argument")
    refused(blank, "422", "query parameter 'q'", "only spaces")
    refused(big, "422", "query parameter 'limit'", "500")
    refused(long_text, "422", "body field 'text'")
    assert admin.emulator.outbound(to="15551230005") == []


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_wrong_token_is_a_tool_error_and_sends_nothing(
    deployment: Deployment, transport: str
) -> None:
    admin = deployment.admin
    await admin.user_says("15551230006")
    async with mcp_client(deployment, transport, token="not-the-admin-token") as client:
        tools = (await client.list_tools()).tools  # MCP itself works; whatsray refuses
        send = await client.call_tool("whatsapp_send_message", {"to": "15551230006", "text": "x"})
        chats = await client.call_tool("whatsapp_get_chats", {})
        jobs = await client.call_tool("cronjob_list", {})
    assert len(tools) == 11
    for result in (send, chats, jobs):
        refused(result, "403", "forbidden", "not the admin token", "WHATSRAY_ADMIN_TOKEN")
    assert admin.emulator.outbound(to="15551230006") == []
    assert deployment.jobs.requests == []  # refused before the route


async def test_the_http_transport_needs_the_bearer_token(deployment: Deployment) -> None:
    async with mcp_http_server(deployment, ADMIN_TOKEN) as url, httpx.AsyncClient() as http:
        hello = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        missing = await http.post(url, json=hello)
        wrong = await http.post(url, json=hello, headers={"Authorization": "Bearer nope"})
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.json()["error"] == "unauthorized"
    assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"


# --- cronjob tools -> the jobs API ----------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_cronjob_tools_map_onto_the_jobs_api(
    deployment: Deployment, transport: str
) -> None:
    jobs = deployment.jobs
    chat = f"{PNID}:15551230007"
    trigger = {"type": "cron", "expression": "0 9 * * 1-5"}
    hourly = {"type": "interval", "seconds": 3600}
    async with mcp_client(deployment, transport) as client:
        created = ok(
            await client.call_tool(
                "cronjob_create",
                {
                    "name": "stand-up",
                    "chat": chat,
                    "payload": "the daily stand-up",
                    "trigger": trigger,
                    "timezone": "Europe/Berlin",
                    "options": {"quiet_hours": {"start": "22:00", "end": "07:00"}},
                },
            )
        )
        job_id = created["id"]
        listed = ok(await client.call_tool("cronjob_list", {"chat": chat, "kind": "reminder"}))
        got = ok(await client.call_tool("cronjob_get", {"job_id": job_id}))
        updated = ok(
            await client.call_tool(
                "cronjob_update",
                {"job_id": job_id, "trigger": hourly, "payload": {"text": "stand-up", "v": 2}},
            )
        )
        stopped = ok(await client.call_tool("cronjob_stop", {"job_id": job_id}))
        started = ok(await client.call_tool("cronjob_start", {"job_id": job_id}))
        deleted = ok(await client.call_tool("cronjob_delete", {"job_id": job_id}))
        gone = await client.call_tool("cronjob_get", {"job_id": job_id})
    body = {
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "name": "stand-up",
        "kind": "reminder",
        "chat": chat,
        "payload": {"text": "the daily stand-up"},
        "trigger": trigger,
        "timezone": "Europe/Berlin",
    }
    path = f"/api/jobs/{job_id}"
    assert jobs.requests == [
        Recorded("POST", "/api/jobs", {}, body),
        Recorded("GET", "/api/jobs", {"chat": chat, "kind": "reminder"}, None),
        Recorded("GET", path, {}, None),
        Recorded("PATCH", path, {}, {"payload": {"text": "stand-up", "v": 2}, "trigger": hourly}),
        Recorded("POST", f"{path}/stop", {}, None),
        Recorded("POST", f"{path}/start", {}, None),
        Recorded("DELETE", path, {}, None),
        Recorded("GET", path, {}, None),
    ]
    assert created["kind"] == "reminder" and created["trigger"] == trigger
    assert [j["id"] for j in listed["jobs"]] == [job_id] and got["id"] == job_id
    assert updated["trigger"] == hourly
    assert (stopped["enabled"], started["enabled"]) == (False, True)
    assert deleted == {"id": job_id, "deleted": True}  # 204: no body
    refused(gone, "404", "not_found", job_id)
    assert jobs.jobs == {}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cronjob_refusals_change_nothing(deployment: Deployment, transport: str) -> None:
    jobs = deployment.jobs
    async with mcp_client(deployment, transport) as client:
        bad_cron = await client.call_tool(
            "cronjob_create",
            {
                "name": "x",
                "chat": "15551230008",
                "payload": "x",
                "trigger": {"type": "cron", "expression": BAD_CRON},
            },
        )
        repeated = await client.call_tool(
            "cronjob_create",
            {
                "name": "x",
                "chat": "15551230008",
                "payload": "x",
                "trigger": {"type": "interval", "seconds": 60},
                "options": {"kind": "system"},
            },
        )
        nothing = await client.call_tool("cronjob_update", {"job_id": "job-1"})
        dots = await client.call_tool("cronjob_delete", {"job_id": ".."})
        unknown = await client.call_tool("cronjob_stop", {"job_id": "job-404"})
    refused(bad_cron, "422", "body field 'trigger.expression'", "not a cron expression")
    refused(repeated, "options repeat kind")
    refused(nothing, "nothing to update")
    refused(dots, "job_id must not be")
    refused(unknown, "404", "not_found", "job-404")
    assert jobs.jobs == {}
    # Only the two that were valid requests reached the API; the others never left the server.
    assert [(r.method, r.path) for r in jobs.requests] == [
        ("POST", "/api/jobs"),
        ("POST", "/api/jobs/job-404/stop"),
    ]


async def test_an_unreachable_api_is_a_tool_error(deployment: Deployment) -> None:
    deployment.url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with mcp_client(deployment, "stdio") as client:
        result = await client.call_tool("whatsapp_get_chats", {})
    refused(result, "cannot reach whatsray", deployment.url, "Nothing was done")


# --- cronjob tools against the real jobs API --------------------------------------------------


async def test_the_cronjob_tools_drive_the_real_jobs_api(tmp_path: Path) -> None:
    """The same tools over stdio against `create_jobs_router` over a real `SchedulerCore` and
    the real Store: jobs are created, changed and removed there, and its refusals come back."""
    from whatsray.admin.jobs_api import create_jobs_router
    from whatsray.scheduling import SchedulerCore

    chat = f"{PNID}:15551230099"
    async with admin_stack(tmp_path) as admin:
        core = SchedulerCore(admin.store, RecordingSink(), timers=False)
        await core.start()
        try:
            admin.app.include_router(create_jobs_router(admin_token=ADMIN_TOKEN, jobs=core))
            async with serve_in_loop(admin.app) as url:
                deployment = Deployment(admin, FakeJobsApi(ADMIN_TOKEN), url, tmp_path)
                async with mcp_client(deployment, "stdio") as client:
                    created = ok(
                        await client.call_tool(
                            "cronjob_create",
                            {
                                "name": "call mom",
                                "chat": chat,
                                "payload": "call mom",
                                "trigger": {"type": "cron", "expression": "0 9 * * 1-5"},
                                "timezone": "Europe/Berlin",
                            },
                        )
                    )
                    job_id = created["id"]
                    [stored] = await core.list_jobs(chat=chat)
                    assert (stored.id, stored.payload) == (job_id, {"text": "call mom"})
                    stopped = ok(await client.call_tool("cronjob_stop", {"job_id": job_id}))
                    assert stopped["enabled"] is False
                    assert (await core.get_job(job_id)).enabled is False
                    bad = await client.call_tool(
                        "cronjob_update",
                        {"job_id": job_id, "trigger": {"type": "cron", "expression": BAD_CRON}},
                    )
                    refused(bad, "422")
                    ok(await client.call_tool("cronjob_delete", {"job_id": job_id}))
                    refused(await client.call_tool("cronjob_get", {"job_id": job_id}), "404")
            assert await core.list_jobs(chat=chat) == []
        finally:
            await core.close()
