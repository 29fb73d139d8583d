"""The `whatsray` command line: one argparse tree, each command group in its own module."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from whatsray import __version__
from whatsray.cli.chat import add_chat_commands
from whatsray.cli.emulator import add_emulator_commands
from whatsray.cli.local import add_local_commands
from whatsray.cli.mcp import add_mcp_commands
from whatsray.cli.model import add_model_commands
from whatsray.cli.settings import add_settings_commands
from whatsray.cli.webhook import add_webhook_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whatsray", description="WhatsApp agentic bots on Ray.")
    parser.add_argument("--version", action="version", version=f"whatsray {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_local_commands(subparsers)
    add_emulator_commands(subparsers)
    add_chat_commands(subparsers)
    add_webhook_commands(subparsers)
    add_settings_commands(subparsers)
    add_model_commands(subparsers)
    add_mcp_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the console
    exit_code: int = args.func(args)
    return exit_code
