"""`whatsray mcp`: where the URL and token come from, config errors, and the HTTP bearer guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from whatsray.admin.auth import BearerAuth
from whatsray.cli import main
from whatsray.mcp import TOOL_NAMES, BearerGuard, WhatsrayApi, build_server, http_app
from whatsray.settings import LocalSecrets

pytestmark = pytest.mark.usefixtures("settings_env_isolated")


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What `whatsray mcp http` would have served, instead of serving it."""
    calls: list[dict[str, Any]] = []

    async def fake_serve_http(api: WhatsrayApi, **kwargs: Any) -> None:
        calls.append({"url": api.base_url, **kwargs})
        await api.aclose()

    monkeypatch.setattr("whatsray.mcp.serve_http", fake_serve_http)
    return calls


def test_the_token_and_url_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, served: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv("WHATSRAY_ADMIN_TOKEN", "from-env")
    monkeypatch.setenv("WHATSRAY_MCP_API_URL", "http://bot.internal:9000/")
    assert main(["mcp", "http", "--port", "9100"]) == 0
    assert served == [
        {
            "url": "http://bot.internal:9000",
            "token": "from-env",
            "host": "127.0.0.1",
            "port": 9100,
            "path": "/mcp",
        }
    ]


def test_flags_win_over_the_environment(
    monkeypatch: pytest.MonkeyPatch, served: list[dict[str, Any]]
) -> None:
    monkeypatch.setenv("WHATSRAY_ADMIN_TOKEN", "from-env")
    argv = ["mcp", "http", "--api-url", "http://other:1", "--token", "flag", "--path", "/x"]
    assert main(argv) == 0
    assert (served[0]["url"], served[0]["token"], served[0]["path"]) == (
        "http://other:1",
        "flag",
        "/x",
    )


def test_local_mode_uses_the_token_whatsray_local_generated(
    tmp_path: Path, served: list[dict[str, Any]]
) -> None:
    generated = LocalSecrets(tmp_path / "data").load_or_create()["admin_token"]
    assert main(["mcp", "http"]) == 0
    assert served[0]["token"] == generated and served[0]["url"] == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["mcp", "stdio"], "no admin token: set WHATSRAY_ADMIN_TOKEN"),
        (["mcp", "http"], "no admin token"),
        (["mcp", "stdio", "--token", "t", "--api-url", "bot:8000"], "API URL"),
        (["mcp", "http", "--token", "t", "--path", "mcp"], "--path must start with '/'"),
    ],
)
def test_config_errors_exit_2_naming_the_problem(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""  # stdout belongs to the protocol
    assert message in err
    assert not (tmp_path / "data").exists()  # no secrets were generated on the way


def test_a_bad_port_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["mcp", "http", "--port", "70000"])
    assert exited.value.code == 2
    assert "a port is 1 to 65535" in capsys.readouterr().err


async def test_the_bearer_guard_lets_only_the_token_through() -> None:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guard = BearerGuard(app, BearerAuth("secret"))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(guard), base_url="http://mcp"
    ) as http:
        missing = await http.post("/mcp")
        wrong = await http.post("/mcp", headers={"Authorization": "Bearer nope"})
        right = await http.post("/mcp", headers={"Authorization": "Bearer secret"})
    assert (missing.status_code, missing.headers["WWW-Authenticate"]) == (401, "Bearer")
    assert missing.json()["error"] == "unauthorized"
    assert wrong.status_code == 403 and "WWW-Authenticate" not in wrong.headers
    assert (right.status_code, right.text) == (200, "ok")
    assert reached == ["/mcp"]


def test_http_app_refuses_a_relative_path() -> None:
    server = build_server(WhatsrayApi("http://whatsray", "t"))
    with pytest.raises(ValueError, match="must start with '/'"):
        http_app(server, token="t", path="mcp")


async def test_in_process_the_tools_answer_from_the_api() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"chats": [], "next_offset": None, "path": request.url.path}
        )

    api = WhatsrayApi("http://whatsray", "t", transport=httpx.MockTransport(handler))
    async with api, Client(build_server(api)) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        result = await client.call_tool("whatsapp_get_chats", {})
    assert names == list(TOOL_NAMES)
    assert not result.is_error
    assert result.structured_content == {"chats": [], "next_offset": None, "path": "/api/chats"}
