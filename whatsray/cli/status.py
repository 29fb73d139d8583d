"""`whatsray status`: one terminal view of a running whatsray, from its admin API.

whatsray status                  the platform now: partitions, sessions, agents, outboxes...
whatsray status --watch          refreshed every 2 s (or --watch SECONDS) until Ctrl-C
whatsray status --json           the snapshot as JSON (GET /api/status)

The URL is --url, else $WHATSRAY_MCP_API_URL (default http://127.0.0.1:8000). The token is
--token, else $WHATSRAY_ADMIN_TOKEN, else (local mode) the one `whatsray local` generated.
Exit status: 0; 1 when whatsray cannot be reached or answers with an error; 2 for a missing or
refused token or a bad option. See docs/admin-api.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx
from pydantic import ValidationError

from whatsray.admin.status_models import StatusOut
from whatsray.cli.connection import admin_api
from whatsray.cli.status_render import render_status
from whatsray.settings import SettingsError

__all__ = ["StatusError", "add_status_commands", "fetch_status", "watch_status"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_WATCH_S = 2.0
REQUEST_TIMEOUT_S = 10.0
CLEAR_SCREEN = "\x1b[H\x1b[2J"  # cursor home, clear: the next view replaces this one

sleep = time.sleep  # between refreshes (tests replace it)


class StatusError(Exception):
    """Why there is no snapshot, in one line, and the exit status it calls for."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_status_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "status",
        help="a running whatsray at a glance: backlog, sessions, agents, outboxes, jobs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url", type=_url, help="whatsray's base URL (default: $WHATSRAY_MCP_API_URL or settings)"
    )
    parser.add_argument(
        "--token",
        help="the admin token (default: $WHATSRAY_ADMIN_TOKEN; prefer the variable: arguments"
        " show in the process list)",
    )
    parser.add_argument(
        "--watch", nargs="?", const=DEFAULT_WATCH_S, type=_interval, metavar="SECONDS",
        help=f"refresh in place every SECONDS (default {DEFAULT_WATCH_S:g}) until Ctrl-C",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    parser.set_defaults(func=run_status_command)


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _url(value: str) -> str:
    if not _is_http_url(value):
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {value!r}")
    return value.rstrip("/")


def _interval(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not math.isfinite(seconds) or not 0.1 <= seconds <= 3600:
        raise argparse.ArgumentTypeError(f"refresh every 0.1 to 3600 seconds, got {value!r}")
    return seconds


def fetch_status(http: httpx.Client) -> StatusOut:
    """`GET /api/status` through `http` (its base URL and bearer token set)."""
    url = str(http.base_url).rstrip("/")
    try:
        response = http.get("/api/status")
    except httpx.TimeoutException:
        raise StatusError(f"whatsray at {url} did not answer in {REQUEST_TIMEOUT_S:g} s") from None
    except httpx.TransportError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise StatusError(f"cannot reach whatsray at {url} ({reason})") from None
    if response.status_code in (401, 403):
        raise StatusError(
            f"whatsray at {url} refused the admin token ({response.status_code}:"
            f" {_message(response)}); check --token or WHATSRAY_ADMIN_TOKEN",
            EXIT_CONFIG,
        )
    if response.status_code == 404:
        raise StatusError(f"{url} has no /api/status: is it whatsray, and a version with status?")
    if response.status_code != 200:
        raise StatusError(
            f"whatsray at {url} answered {response.status_code}: {_message(response)}"
        )
    try:
        return StatusOut.model_validate_json(response.content)
    except ValidationError:
        raise StatusError(f"{url}/api/status did not answer with a status snapshot") from None


def _message(response: httpx.Response) -> str:
    """The `message` of an admin API error body, else the HTTP reason."""
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message) if message else response.reason_phrase


def watch_status(
    fetch: Callable[[], StatusOut],
    view: Callable[[StatusOut], str],
    out: TextIO,
    every_s: float,
    *,
    in_place: bool,
) -> int:
    """Show a fresh view every `every_s` until Ctrl-C (exit 0) or a refused token (exit 2). An
    unreachable whatsray is shown, and asked again: it may be restarting."""
    try:
        while True:
            try:
                text = view(fetch())
            except StatusError as exc:
                if exc.exit_code == EXIT_CONFIG:  # a refused token stays refused
                    print(f"error: {exc}", file=sys.stderr)
                    return exc.exit_code
                text = f"error: {exc} (trying again every {every_s:g} s)"
            out.write(f"{CLEAR_SCREEN}{text}\n" if in_place else f"{text}\n\n")
            out.flush()
            sleep(every_s)
    except KeyboardInterrupt:
        return EXIT_OK


def run_status_command(args: argparse.Namespace) -> int:
    try:
        url, token = admin_api(args.url, args.token)
        if not _is_http_url(url):  # from the settings: --url was checked already
            raise SettingsError(f"WHATSRAY_MCP_API_URL is not an http(s) URL: {url!r}")
        if not token.isascii() or not token.isprintable():
            raise SettingsError("the admin token must be printable ASCII (it travels in a header)")
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT_S) as http:

        def view(status: StatusOut) -> str:
            if args.json:  # one object per line when watching: easy to pipe
                return status.model_dump_json(indent=None if args.watch else 2)
            return render_status(status, url)

        if args.watch is not None:
            in_place = sys.stdout.isatty() and not args.json
            fetch = lambda: fetch_status(http)  # noqa: E731
            return watch_status(fetch, view, sys.stdout, args.watch, in_place=in_place)
        try:
            print(view(fetch_status(http)))
        except StatusError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    return EXIT_OK
