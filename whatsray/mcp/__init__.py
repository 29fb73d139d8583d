"""An MCP server for whatsray (Ray-free): the REST API as tools for AI clients (docs/mcp.md).

`build_server(WhatsrayApi(url, token))` gives the SDK's `MCPServer`; `serve_stdio` and
`serve_http` run it over the SDK's stdio and streamable HTTP transports (`whatsray mcp ...`).
"""

from __future__ import annotations

from whatsray.mcp.api import ApiError, ApiUnreachable, WhatsrayApi, check_api_url
from whatsray.mcp.server import TOOL_NAMES, build_server, tool_error
from whatsray.mcp.transports import BearerGuard, http_app, serve_http, serve_stdio

__all__ = [
    "TOOL_NAMES",
    "ApiError",
    "ApiUnreachable",
    "BearerGuard",
    "WhatsrayApi",
    "build_server",
    "check_api_url",
    "http_app",
    "serve_http",
    "serve_stdio",
    "tool_error",
]
