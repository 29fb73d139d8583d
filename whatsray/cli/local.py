"""`whatsray local`: everything on one laptop, on the embedded defaults.

For now that is the WhatsApp emulator wired to a webhook endpoint that verifies every signed POST
and prints the events parsed from it: act as a user through the emulator and watch what arrives.
The Ray pipeline takes the endpoint's place once it exists; the command and its defaults stay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import Any

import uvicorn

from whatsray.cli.webhook import print_events
from whatsray.settings import Settings, SettingsError, load_settings, resolve_local_secrets
from whatsray.whatsapp.emulator import EmulatorConfig, create_emulator_app
from whatsray.whatsapp.webhook_receiver import create_webhook_receiver


def add_local_commands(subparsers: Any) -> None:
    local = subparsers.add_parser(
        "local", help="run locally: the WhatsApp emulator plus the webhook endpoint"
    )
    local.add_argument("--data-dir", help="where generated secrets are kept (default: data)")
    local.add_argument("--http-port", type=int, help="webhook endpoint port (default: 8000)")
    local.add_argument("--emulator-port", type=int, help="emulator port (default: 8025)")
    local.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    overrides = {
        name: value
        for name in ("data_dir", "http_port", "emulator_port")
        if (value := getattr(args, name)) is not None
    }
    try:
        settings = resolve_local_secrets(load_settings(mode="local", **overrides))
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    asyncio.run(_serve(settings))
    return 0


def _secret(settings: Settings, name: str) -> str:
    value = getattr(settings, name)
    assert value is not None, f"{name} is resolved for local mode"
    secret: str = value.get_secret_value()
    return secret


async def _serve(settings: Settings) -> None:
    webhook_url = f"http://127.0.0.1:{settings.http_port}/webhook"
    emulator_config = EmulatorConfig(
        app_secret=_secret(settings, "app_secret"),
        access_token=_secret(settings, "access_token"),
        webhook_url=webhook_url,
        throughput_mps=settings.throughput_mps,
        **({"phone_numbers": settings.phone_number_ids} if settings.phone_number_ids else {}),
    )
    receiver = create_webhook_receiver(
        app_secret=_secret(settings, "app_secret"),
        verify_token=_secret(settings, "verify_token"),
        on_events=print_events,
    )
    servers = [
        _QuietServer(uvicorn.Config(receiver, port=settings.http_port, log_level="warning")),
        _QuietServer(
            uvicorn.Config(
                create_emulator_app(emulator_config),
                port=settings.emulator_port,
                log_level="warning",
            )
        ),
    ]
    _print_banner(settings, emulator_config, webhook_url)

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    await asyncio.gather(*(server.serve() for server in servers))
    print("whatsray local: stopped", file=sys.stderr)


class _QuietServer(uvicorn.Server):
    """Two servers share one loop, so signals are handled once, above, for both."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _print_banner(settings: Settings, emulator: EmulatorConfig, webhook_url: str) -> None:
    emulator_url = f"http://127.0.0.1:{settings.emulator_port}"
    number = emulator.phone_numbers[0]
    print(
        f"""whatsray local
  webhook endpoint  {webhook_url}   (verify token: {_secret(settings, "verify_token")})
  emulator          {emulator_url}   (plays WhatsApp; Graph API at {emulator_url}/v25.0)
  business number   {number.display_phone_number} (phone number id {number.id})
  app secret        {_secret(settings, "app_secret")}
  access token      {_secret(settings, "access_token")}
  secrets kept in   {settings.data_dir / "local-secrets.env"}

Chat as a WhatsApp user in the browser: {emulator_url}/emulator/console
or from another terminal:
  curl -s {emulator_url}/emulator/inbound -H 'content-type: application/json' \\
    -d '{{"from": "15551234567", "message": {{"type": "text", "text": "hello"}}}}'
Ctrl-C stops everything.
""",
        flush=True,
    )
