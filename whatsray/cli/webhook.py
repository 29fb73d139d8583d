"""`whatsray webhook parse|sign|listen`: look inside webhook bodies, sign them, or receive them.

whatsray webhook parse body.json        one JSON summary per event per line
whatsray webhook parse - < body.json    the same, from stdin
whatsray webhook sign --secret S body.json   the X-Hub-Signature-256 header value
whatsray webhook listen --port 8000     serve /webhook: verify, parse and print every event
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import uvicorn

from whatsray.whatsapp.errors import InvalidWebhookPayload
from whatsray.whatsapp.events import Event
from whatsray.whatsapp.parsing import parse_webhook
from whatsray.whatsapp.signature import SIGNATURE_HEADER, sign
from whatsray.whatsapp.webhook_receiver import create_webhook_receiver

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

    listen = commands.add_parser(
        "listen",
        help="serve a webhook endpoint that verifies, parses and prints every event",
        description="Answer Meta's handshake and signed POSTs on PATH; print one line per event.",
    )
    listen.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    listen.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    listen.add_argument("--path", default="/webhook", help="endpoint path (default: /webhook)")
    listen.add_argument(
        "--app-secret",
        default=os.environ.get("WHATSRAY_APP_SECRET"),
        help="verifies signatures (default: $WHATSRAY_APP_SECRET)",
    )
    listen.add_argument(
        "--verify-token",
        default=os.environ.get("WHATSRAY_VERIFY_TOKEN"),
        help="for the GET handshake (default: $WHATSRAY_VERIFY_TOKEN)",
    )
    listen.add_argument("--quiet", action="store_true", help="do not print events")
    listen.set_defaults(func=run_listen)
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


def run_listen(args: argparse.Namespace) -> int:
    if not args.app_secret or not args.verify_token:
        _error(
            "webhook listen: --app-secret and --verify-token (or their env variables) are required"
        )
        return EXIT_BAD_INPUT
    app = create_webhook_receiver(
        app_secret=args.app_secret,
        verify_token=args.verify_token,
        on_events=(lambda events: None) if args.quiet else print_events,
        path=args.path,
    )
    print(f"listening on http://{args.host}:{args.port}{args.path}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return EXIT_OK


def print_events(events: list[Event]) -> None:
    """One console line per received event (what `whatsray local` and `listen` show)."""
    for event in events:
        print("webhook  <- " + json.dumps(event.summary(), ensure_ascii=False), flush=True)


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
