"""`whatsray settings check`: validate the configuration the way the platform does at start."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from whatsray.settings import SettingsError, load_settings


def add_settings_commands(subparsers: Any) -> None:
    settings = subparsers.add_parser("settings", help="inspect the configuration")
    commands = settings.add_subparsers(dest="settings_command", metavar="COMMAND", required=True)
    check = commands.add_parser(
        "check", help="validate WHATSRAY_* variables and .env; print them with secrets masked"
    )
    check.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    # SecretStr fields serialise as '**********' in JSON mode, so nothing secret is printed.
    print(json.dumps(settings.model_dump(mode="json"), indent=2, default=str))
    return 0
