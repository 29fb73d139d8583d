"""`whatsray webhook parse|sign`: look inside a webhook body, or sign one as Meta would.

whatsray webhook parse body.json        one JSON summary per event per line
whatsray webhook parse - < body.json    the same, from stdin
whatsray webhook sign --secret S body.json   the X-Hub-Signature-256 header value
"""

from __future__ import annotations

import argparse
import json
import sys

from whatsray.whatsapp.errors import InvalidWebhookPayload
from whatsray.whatsapp.parsing import parse_webhook
from whatsray.whatsapp.signature import SIGNATURE_HEADER, sign

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def add_webhook_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Register `webhook parse` and `webhook sign`; returns the group, for more commands."""
    webhook = subparsers.add_parser(
        "webhook",
        help="parse or sign WhatsApp webhook bodies",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    webhook.set_defaults(func=lambda args: _usage(webhook))
    commands = webhook.add_subparsers(dest="webhook_command", metavar="COMMAND")

    parse = commands.add_parser(
        "parse",
        help="print one JSON line per event in a webhook body",
        description="Parse a webhook body and print each event's summary as one JSON line.",
    )
    parse.add_argument("file", metavar="FILE", help="the raw webhook body (JSON), or - for stdin")
    parse.set_defaults(func=run_parse)

    sign_cmd = commands.add_parser(
        "sign",
        help=f"print the {SIGNATURE_HEADER} value of a body",
        description=f"Print the {SIGNATURE_HEADER} header value Meta would send for FILE's bytes.",
    )
    sign_cmd.add_argument("--secret", required=True, help="the app secret (App Dashboard > Basic)")
    sign_cmd.add_argument("file", metavar="FILE", help="the raw webhook body, or - for stdin")
    sign_cmd.set_defaults(func=run_sign)
    return commands


def run_parse(args: argparse.Namespace) -> int:
    raw = _read(args.file)
    if raw is None:
        return EXIT_BAD_INPUT
    try:
        events = parse_webhook(raw)
    except InvalidWebhookPayload as exc:
        _error(f"webhook parse: {_one_line(str(exc))}")
        return EXIT_BAD_INPUT
    for event in events:
        print(json.dumps(event.summary(), ensure_ascii=False))
    return EXIT_OK


def run_sign(args: argparse.Namespace) -> int:
    raw = _read(args.file)
    if raw is None:
        return EXIT_BAD_INPUT
    # The signature covers the bytes exactly as read: no re-encoding, no newline stripping.
    print(sign(args.secret, raw))
    return EXIT_OK


def _read(path: str) -> bytes | None:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        _error(f"webhook: cannot read {path}: {exc.strerror or exc}")
        return None


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_BAD_INPUT


def _error(message: str) -> None:
    print(f"whatsray {message}", file=sys.stderr)


def _one_line(text: str) -> str:
    return " ".join(text.split())
