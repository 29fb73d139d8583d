"""Running the MCP server: stdio, or streamable HTTP behind the admin token.

Both transports are the SDK's. Over stdio the client started the process, so whoever can talk
to it already holds the token (it is in the process's environment). Over HTTP anyone who can
reach the port could drive whatsray with the server's admin token, so every HTTP request must
carry `Authorization: Bearer <token>` (the same admin token by default, checked in constant time
by `whatsray.admin.auth.BearerAuth`) before it reaches the SDK. The SDK adds its DNS-rebinding
protection (Host and Origin checks) when bound to a loopback address.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.types import ASGIApp, Receive, Scope, Send

from whatsray.admin.auth import BearerAuth
from whatsray.mcp.api import WhatsrayApi
from whatsray.mcp.server import build_server

__all__ = ["BearerGuard", "http_app", "serve_http", "serve_stdio"]

log = logging.getLogger(__name__)

DEFAULT_PATH = "/mcp"


class BearerGuard:
    """ASGI middleware: HTTP requests without the bearer token get 401/403 and go no further.

    Lifespan events pass through untouched (the SDK's session manager runs in the lifespan).
    """

    def __init__(self, app: ASGIApp, auth: BearerAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        authorization = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        failure = self.auth.check(authorization)
        if failure is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": failure.error, "message": failure.message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        headers += [(k.lower().encode(), v.encode()) for k, v in failure.headers.items()]
        await send({"type": "http.response.start", "status": failure.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def http_app(
    server: MCPServer[Any],
    *,
    token: str,
    host: str = "127.0.0.1",
    path: str = DEFAULT_PATH,
) -> ASGIApp:
    """The SDK's streamable HTTP app for `server` at `path`, behind the bearer `token`.

    `host` is where it will listen: on a loopback address the SDK also checks Host and Origin.
    """
    if not path.startswith("/"):
        raise ValueError(f"the MCP path must start with '/', got {path!r}")
    app = server.streamable_http_app(streamable_http_path=path, host=host)
    return BearerGuard(app, BearerAuth(token))


async def serve_stdio(api: WhatsrayApi) -> None:
    """Serve MCP over this process's stdin and stdout until the client closes them."""
    async with api:
        await build_server(api).run_stdio_async()


async def serve_http(
    api: WhatsrayApi,
    *,
    token: str,
    host: str = "127.0.0.1",
    port: int = 8765,
    path: str = DEFAULT_PATH,
    log_level: str = "warning",
) -> None:
    """Serve MCP over streamable HTTP at http://host:port/path until interrupted."""
    app = http_app(build_server(api), token=token, host=host, path=path)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="on")
    async with api:
        await uvicorn.Server(config).serve()
