"""`whatsray emulator`: run the WhatsApp emulator standalone (Meta's side, on your machine).

Point a bot at the printed Graph base URL with the printed token, point the emulator at the bot's
webhook with `--webhook-url`, and act as users through the control API. Every send and every
webhook delivery is logged as one console line.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import secrets
import sys
from typing import Any

from pydantic import ValidationError

from whatsray.whatsapp.emulator import (
    DEFAULT_PORT,
    BusinessNumber,
    EmulatorConfig,
    StatusDelays,
    run_emulator,
)

# Names of environment variables, not secrets.
APP_SECRET_ENV = "WHATSRAY_APP_SECRET"  # noqa: S105
ACCESS_TOKEN_ENV = "WHATSRAY_ACCESS_TOKEN"  # noqa: S105
BANNER_API_VERSION = "v25.0"


def add_emulator_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "emulator",
        help="run the WhatsApp emulator (Graph API + signed webhooks + control API)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})"
    )
    parser.add_argument("--webhook-url", help="where inbound and status webhooks are POSTed")
    parser.add_argument(
        "--app-secret", help=f"signs webhooks (default: ${APP_SECRET_ENV}, else random)"
    )
    parser.add_argument(
        "--access-token", help=f"Bearer token to accept (default: ${ACCESS_TOKEN_ENV}, else random)"
    )
    parser.add_argument(
        "--phone-number-id",
        action="append",
        metavar="ID[:DISPLAY_NUMBER[:MPS]]",
        help="a business number to serve, with its own throughput if MPS is given (repeatable;"
        " default: 106540352242922:15550783881)",
    )
    parser.add_argument("--window-failure-mode", choices=("sync", "async"), default="sync")
    parser.add_argument(
        "--no-window-enforcement", action="store_true", help="allow free-form sends at any time"
    )
    parser.add_argument(
        "--throughput-mps",
        type=float,
        default=80.0,
        help="of a number without its own; default: 80",
    )
    parser.add_argument("--pair-burst", type=int, default=45, help="default: 45")
    parser.add_argument("--pair-refill-seconds", type=float, default=6.0, help="default: 6")
    parser.add_argument(
        "--known-template", action="append", metavar="NAME", help="only these template names exist"
    )
    parser.add_argument("--sent-delay", type=float, default=0.05, help="seconds until 'sent'")
    parser.add_argument("--delivered-delay", type=float, default=0.3, help="until 'delivered'")
    parser.add_argument(
        "--read-delay", type=float, default=1.0, help="until 'read' (negative: never read)"
    )
    parser.add_argument("--duplicate-probability", type=float, default=0.0)
    parser.add_argument("--out-of-order-probability", type=float, default=0.0)
    parser.add_argument("--delivery-max-attempts", type=int, default=8)
    parser.add_argument("--delivery-backoff-max", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument(
        "--status-batch-window-ms",
        type=float,
        default=25.0,
        help="statuses due within this window share one webhook POST (0: one per POST)",
    )
    parser.add_argument("--status-batch-max", type=int, default=50, help="statuses per POST")
    parser.add_argument("--public-url", help="base URL written into media links")
    parser.add_argument("--seed", type=int, default=0, help="seed for injected randomness")
    parser.set_defaults(func=run_emulator_command)


def _secret(given: str | None, env: str) -> tuple[str, str]:
    """The secret and where it came from, for the banner."""
    if given:
        return given, "--flag"
    if os.environ.get(env):
        return os.environ[env], f"${env}"
    return secrets.token_urlsafe(24), "generated"


def config_from_args(args: argparse.Namespace) -> tuple[EmulatorConfig, dict[str, str]]:
    app_secret, secret_source = _secret(args.app_secret, APP_SECRET_ENV)
    access_token, token_source = _secret(args.access_token, ACCESS_TOKEN_ENV)
    numbers = tuple(BusinessNumber.parse(s) for s in args.phone_number_id or ()) or (
        BusinessNumber(),
    )
    config = EmulatorConfig(
        app_secret=app_secret,
        access_token=access_token,
        phone_numbers=numbers,
        webhook_url=args.webhook_url,
        public_url=args.public_url,
        throughput_mps=args.throughput_mps,
        pair_burst=args.pair_burst,
        pair_refill_seconds=args.pair_refill_seconds,
        window_enforcement=not args.no_window_enforcement,
        window_failure_mode=args.window_failure_mode,
        known_templates=tuple(args.known_template or ()),
        status_delays=StatusDelays(
            sent=args.sent_delay,
            delivered=args.delivered_delay,
            read=args.read_delay if args.read_delay >= 0 else None,
        ),
        duplicate_probability=args.duplicate_probability,
        out_of_order_probability=args.out_of_order_probability,
        delivery_max_attempts=args.delivery_max_attempts,
        delivery_backoff_max_s=args.delivery_backoff_max,
        status_batch_window_s=args.status_batch_window_ms / 1000,
        status_batch_max=args.status_batch_max,
        seed=args.seed,
    )
    return config, {"app_secret": secret_source, "access_token": token_source}


def banner(config: EmulatorConfig, host: str, port: int, sources: dict[str, str]) -> str:
    url = f"http://{host}:{port}"
    numbers = "\n".join(
        f"  phone number id   {n.id}  (display {n.display_phone_number}, WABA {n.waba_id},"
        f" {config.throughput_of(n.id):g} msg/s)"
        for n in config.phone_numbers
    )
    control = f"{url}/emulator"
    return f"""whatsray emulator: WhatsApp Cloud API on {url}
  graph API base    {url}/{BANNER_API_VERSION}   (any vNN.N is accepted)
{numbers}
  access token      {config.access_token}   ({sources["access_token"]})
  app secret        {config.app_secret}   ({sources["app_secret"]})
  webhook url       {config.webhook_url or "(none: PUT " + control + "/webhook-url)"}
  control API       POST {control}/inbound      act as a user
                    GET  {control}/outbound     what the bot sent
                    GET  {control}/webhooks     webhook delivery attempts
                    GET  {control}/requests     every Graph API request
                    POST {control}/faults       inject failures  (DELETE clears)
                    POST {control}/clock/advance   POST {control}/reset
  console           {control}/console
Try:  curl -s {control}/inbound -H 'content-type: application/json' \\
        -d '{{"from": "15551234567", "message": {{"type": "text", "text": "hello"}}}}'
"""


def _console_logging() -> None:
    """One plain line per send and delivery, whatever the root logger's format."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    logger = logging.getLogger("whatsray.emulator")
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    # httpx logs every webhook POST at INFO; our own line already says it.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def run_emulator_command(args: argparse.Namespace) -> int:
    try:
        config, sources = config_from_args(args)
    except (ValidationError, ValueError) as exc:
        print(f"whatsray emulator: invalid option: {exc}", file=sys.stderr)
        return 2
    print(banner(config, args.host, args.port, sources), flush=True)
    _console_logging()
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn already shut down cleanly
        run_emulator(config, args.host, args.port)
    return 0
