"""The `whatsray` command line: one argparse tree, each command group in its own module."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from whatsray import __version__
from whatsray.cli.analytics import add_analytics_commands
from whatsray.cli.chat import add_chat_commands
from whatsray.cli.emulator import add_emulator_commands
from whatsray.cli.local import add_local_commands
from whatsray.cli.mcp import add_mcp_commands
from whatsray.cli.model import add_model_commands
from whatsray.cli.route import add_route_commands
from whatsray.cli.settings import add_settings_commands
from whatsray.cli.status import add_status_commands
from whatsray.cli.stories import add_test_commands
from whatsray.cli.webhook import add_webhook_commands
from whatsray.observability.logs import LogSetup, configure_logging
from whatsray.settings import SettingsError, load_settings


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
    add_status_commands(subparsers)
    add_route_commands(subparsers)
    add_test_commands(subparsers)
    add_analytics_commands(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(logging.DEBUG if args.verbose else logging.INFO)
    exit_code: int = args.func(args)
    return exit_code


def _configure_logging(level: int) -> None:
    """Logs as the settings say (docs/logging.md). Settings that do not load are the command's
    to report: text until then. A program that set logging up already (pytest, a caller of
    `main`) keeps its own, as `logging.basicConfig` would."""
    if logging.getLogger().handlers:
        return
    try:
        setup = LogSetup.from_settings(load_settings(), level=level)
    except SettingsError:
        setup = LogSetup(level=level)
    configure_logging(setup, stream=sys.stderr)
