"""`whatsray mcp stdio|http`: serve a running whatsray's REST API to AI clients over MCP.

whatsray mcp stdio                 for clients that start the server (Claude Desktop, IDEs)
whatsray mcp http --port 8765      streamable HTTP at http://127.0.0.1:8765/mcp

The API URL is --api-url, else WHATSRAY_MCP_API_URL (default http://127.0.0.1:8000). The token
is --token, else WHATSRAY_ADMIN_TOKEN, else (local mode) the one in the data directory that
`whatsray local` generated. Over HTTP, clients send the same token as `Authorization: Bearer`.
See docs/mcp.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from typing import Any

from whatsray.cli.connection import admin_api
from whatsray.settings import SettingsError

EXIT_OK = 0
EXIT_CONFIG = 2


def add_mcp_commands(subparsers: Any) -> None:
    mcp = subparsers.add_parser(
        "mcp",
        help="serve whatsray's REST API as MCP tools (stdio or streamable HTTP)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = mcp.add_subparsers(dest="mcp_command", metavar="COMMAND", required=True)
    stdio = commands.add_parser(
        "stdio",
        help="MCP over stdin/stdout (the client starts this process)",
        description="Serve MCP over stdin/stdout; logs go to stderr.",
    )
    _connection_arguments(stdio)
    stdio.set_defaults(func=_run_stdio)

    http = commands.add_parser(
        "http",
        help="MCP over streamable HTTP, behind the admin token",
        description="Serve MCP over streamable HTTP; every request needs the bearer token.",
    )
    _connection_arguments(http)
    http.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    http.add_argument("--port", type=_port, default=8765, help="port (default: 8765)")
    http.add_argument("--path", default="/mcp", help="endpoint path (default: /mcp)")
    http.set_defaults(func=_run_http)


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1 to 65535, got {port}")
    return port


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-url", help="whatsray's base URL (default: $WHATSRAY_MCP_API_URL or settings)"
    )
    parser.add_argument(
        "--token",
        help="the admin token (default: $WHATSRAY_ADMIN_TOKEN; prefer the variable: arguments"
        " show in the process list)",
    )


def _api(args: argparse.Namespace) -> tuple[Any, str]:
    """The API client and its token, from the flags and the settings; `SettingsError`/
    `ValueError` name what is missing or wrong."""
    from whatsray.mcp import WhatsrayApi  # the MCP SDK loads only for these commands

    url, token = admin_api(args.api_url, args.token)
    return WhatsrayApi(url, token), token


def _run_stdio(args: argparse.Namespace) -> int:
    from whatsray.mcp import serve_stdio

    try:
        api, _ = _api(args)
    except (SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # stdout carries the protocol only
        return EXIT_CONFIG
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C in a terminal: a quiet exit
        asyncio.run(serve_stdio(api))
    return EXIT_OK


def _run_http(args: argparse.Namespace) -> int:
    from whatsray.mcp import serve_http

    try:
        api, token = _api(args)
        if not str(args.path).startswith("/"):
            raise ValueError(f"--path must start with '/', got {args.path!r}")
    except (SettingsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    url = f"http://{args.host}:{args.port}{args.path}"
    print(
        f"MCP (streamable HTTP) at {url} for whatsray at {api.base_url};"
        " clients send 'Authorization: Bearer <admin token>'",
        file=sys.stderr,
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_http(api, token=token, host=args.host, port=args.port, path=args.path))
    return EXIT_OK
