"""`whatsray chat --from NUMBER`: chat with the bot from a terminal, as one WhatsApp user.

Each line you type is sent through the emulator's control API as a text message from NUMBER;
what the bot sends to NUMBER is printed as `bot> ...` as soon as it arrives (polled from
`GET /emulator/outbound`). `/1`, `/2`... tap a button or list row of the last interactive
message; `/quit` or Ctrl-D leaves. Lines can be piped in: after the end of input the command
keeps printing replies until none has arrived for `--linger` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TextIO

import httpx

from whatsray.cli.chat_render import Option, render_reply, reply_options
from whatsray.whatsapp.emulator import DEFAULT_PORT
from whatsray.whatsapp.emulator.client import (
    DEFAULT_POLL_INTERVAL_S,
    EmulatorClient,
    EmulatorClientError,
    EmulatorRequestError,
    EmulatorUnreachable,
)

EMULATOR_URL_ENV = "WHATSRAY_EMULATOR_URL"
EMULATOR_PORT_ENV = "WHATSRAY_EMULATOR_PORT"  # the local mode's port setting (docs/settings.md)
PIPED_LINGER_S = 5.0
PROMPT = "you> "
_CHOICE = re.compile(r"/(\d{1,2})")
_PHONE = re.compile(r"\+?[\d \-()]{5,20}")

Show = Callable[[list[str]], None]


def add_chat_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="chat with the bot from the terminal, as a WhatsApp user (through the emulator)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--from", dest="from_", required=True, type=_phone, metavar="NUMBER",
        help="the user's phone number, with country code (e.g. 15551234567)",
    )  # fmt: skip
    parser.add_argument("--name", help="the user's WhatsApp profile name")
    parser.add_argument(
        "--emulator-url",
        help=f"the emulator (default: ${EMULATOR_URL_ENV}, else http://127.0.0.1:"
        f"${EMULATOR_PORT_ENV} or {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--phone-number-id", help="the business number to write to (default: the emulator's first)"
    )
    parser.add_argument(
        "--linger", type=float, metavar="SECONDS",
        help="after the end of input, print replies until none came for this long "
        f"(default: 0 on a terminal, {PIPED_LINGER_S:g} when input is piped)",
    )  # fmt: skip
    parser.add_argument(
        "--poll-interval", type=float, default=DEFAULT_POLL_INTERVAL_S, metavar="SECONDS",
        help=f"how often to ask the emulator for replies (default: {DEFAULT_POLL_INTERVAL_S})",
    )  # fmt: skip
    parser.set_defaults(func=run_chat_command)


def _phone(value: str) -> str:
    digits = "".join(ch for ch in value if ch.isdigit())
    if not _PHONE.fullmatch(value.strip()) or len(digits) < 5:
        raise argparse.ArgumentTypeError(f"not a phone number: {value!r}")
    return digits


def resolve_emulator_url(given: str | None, environ: Mapping[str, str]) -> str:
    """--emulator-url, else $WHATSRAY_EMULATOR_URL, else the local mode's emulator port."""
    url = given or environ.get(EMULATOR_URL_ENV)
    if not url:
        url = f"http://127.0.0.1:{environ.get(EMULATOR_PORT_ENV) or DEFAULT_PORT}"
    return url.rstrip("/")


# --- The conversation ---------------------------------------------------------------------------


class ChatSession:
    """One user's side of the chat. `show` prints lines; in tests it collects them."""

    def __init__(
        self,
        client: EmulatorClient,
        user: str,
        show: Show,
        *,
        profile_name: str | None = None,
        phone_number_id: str | None = None,
        echo: bool = False,
        poll_interval: float = DEFAULT_POLL_INTERVAL_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.user = user
        self.profile_name = profile_name
        self.phone_number_id = phone_number_id
        self.since = 0
        self.options: list[Option] = []
        self._show = show
        self._echo = echo
        self._poll_interval = poll_interval
        self._sleep = sleep
        self._clock = clock
        self._poll_lock = asyncio.Lock()
        self._unreachable = False

    async def open(self) -> None:
        """Check the emulator is there, and skip what the bot sent before this chat began."""
        await self.client.health()
        self.since = await self.client.last_seq(self.user)

    async def poll(self) -> int:
        """Print the replies that arrived since the last poll; returns how many."""
        async with self._poll_lock:
            try:
                replies = await self.client.replies(self.user, self.since)
            except EmulatorClientError as exc:
                if not self._unreachable:  # say it once, not on every poll
                    self._show([f"-- {exc} (still trying)"])
                    self._unreachable = True
                return 0
            if self._unreachable:
                self._show(["-- the emulator answers again"])
                self._unreachable = False
                if replies == [] and await self._restarted():
                    replies = await self.client.replies(self.user, self.since)
            shown = 0
            for reply in replies:
                self.since = max(self.since, reply.seq)
                if self.phone_number_id and reply.phone_number_id != self.phone_number_id:
                    continue
                self._show(render_reply(reply))
                shown += 1
                if reply.accepted and reply.type == "interactive":
                    self.options = reply_options(reply)
            return shown

    async def _restarted(self) -> bool:
        """A restarted emulator numbers its log from 1 again: read it from the start, or the
        new replies would all sit below `since`."""
        if await self.client.last_seq(self.user) >= self.since:
            return False
        self.since = 0
        return True

    async def poll_forever(self) -> None:
        while True:
            await self.poll()
            await self._sleep(self._poll_interval)

    async def linger(self, quiet_seconds: float) -> None:
        """Keep printing replies until none has arrived for `quiet_seconds`."""
        quiet_since = self._clock()
        while (left := quiet_seconds - (self._clock() - quiet_since)) > 0:
            await self._sleep(min(self._poll_interval, left))
            if await self.poll():
                quiet_since = self._clock()

    async def handle(self, line: str) -> bool:
        """Act on one typed line; False means the user wants to leave."""
        text = line.strip()
        if not text:
            return True
        if text == "/quit":
            return False
        if text == "/help":
            self._show(HELP.splitlines())
            return True
        choice = _CHOICE.fullmatch(text)
        if choice:
            await self._choose(int(choice.group(1)))
            return True
        if self._echo:
            self._show([PROMPT + text])
        await self._send({"type": "text", "text": text})
        return True

    async def _choose(self, number: int) -> None:
        if not 1 <= number <= len(self.options):
            have = f"/1 to /{len(self.options)}" if self.options else "none"
            self._show([f"-- no option {number} (options of the last menu: {have})"])
            return
        option = self.options[number - 1]
        self._show([f"{PROMPT}[tapped {option.title}]"])
        await self._send(option.inbound_message())

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            receipt = await self.client.send(
                self.user,
                message,
                profile_name=self.profile_name,
                phone_number_id=self.phone_number_id,
            )
        except EmulatorClientError as exc:
            self._show([f"-- not sent: {exc}"])
            return
        # A bot that answers inside its webhook call has already replied: show it right here.
        await self.poll()
        if not receipt.delivered:
            what = receipt.error or f"HTTP {receipt.status_code}"
            later = "; the emulator retries" if receipt.retrying else ""
            self._show([f"-- the bot's webhook did not take it ({what}){later}"])


HELP = """-- type a message and press Enter to send it as this user
-- /1, /2, ...  tap a button or list row of the last menu the bot sent
-- /quit or Ctrl-D  leave"""


async def converse(session: ChatSession, lines: asyncio.Queue[str | None], linger: float) -> None:
    """Send each line from the queue (None = end of input) while printing replies as they come."""
    poller = asyncio.create_task(session.poll_forever())
    try:
        ended = False
        while True:
            line = await lines.get()
            if line is None:
                ended = True
                break
            if not await session.handle(line):
                break
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
    await session.poll()
    if ended and linger > 0:
        await session.linger(linger)


# --- The terminal -------------------------------------------------------------------------------


class Terminal:
    """Prints reply lines. On an interactive terminal (readline), a reply that arrives while
    the user is typing is printed above the input line, and the half-typed line is redrawn."""

    def __init__(self, out: TextIO, line_buffer: Callable[[], str] | None = None) -> None:
        self._out = out
        self._line_buffer = line_buffer
        self.at_prompt = False  # the prompt is on screen, waiting for input (reader thread)

    def prompt_shown(self) -> None:
        self.at_prompt = True

    def show(self, lines: list[str]) -> None:
        text = "\n".join(lines) + "\n"
        if self._line_buffer is not None and self.at_prompt:
            # \r + erase line, the reply, then the prompt and what was typed so far.
            text = "\r\x1b[K" + text + PROMPT + self._line_buffer()
        self._out.write(text)
        self._out.flush()


def _start_reader(
    loop: asyncio.AbstractEventLoop,
    queue: asyncio.Queue[str | None],
    terminal: Terminal,
    interactive: bool,
) -> None:
    """Read stdin in a daemon thread (a blocked read must not keep the process alive on Ctrl-C)
    and hand each line to the event loop; None marks the end of input."""

    hooked = interactive and _on_prompt_shown(terminal.prompt_shown)

    def read() -> None:
        while True:
            line: str | None
            try:
                if interactive:
                    terminal.at_prompt = not hooked
                    try:
                        line = input(PROMPT)
                    finally:
                        terminal.at_prompt = False
                else:
                    line = sys.stdin.readline() or None
            except (EOFError, OSError, ValueError):
                line = None
                if interactive:  # Ctrl-D leaves the cursor after the prompt
                    terminal.show([""])
            try:
                loop.call_soon_threadsafe(queue.put_nowait, line)
            except RuntimeError:  # the loop is closed: the chat is over
                return
            if line is None or line.strip() == "/quit":
                return

    threading.Thread(target=read, name="chat-stdin", daemon=True).start()


def _on_prompt_shown(hook: Callable[[], None]) -> bool:
    """Have readline call `hook` once the prompt is on screen. Until then a reply is printed as
    a plain line (after Enter the cursor is on a fresh line), so the prompt is not drawn twice."""
    try:
        import readline

        readline.set_pre_input_hook(hook)
    except (ImportError, AttributeError):  # no readline, or one without the hook (libedit)
        return False
    return True


def _readline_buffer() -> Callable[[], str] | None:
    try:
        import readline  # absent on some platforms; loaded only for a terminal session
    except ImportError:
        return None
    return readline.get_line_buffer


async def _chat(args: argparse.Namespace, url: str, interactive: bool, linger: float) -> int:
    line_buffer = _readline_buffer() if interactive else None
    terminal = Terminal(sys.stdout, line_buffer)
    # trust_env=False: the emulator is on loopback; a configured HTTP proxy must not get it.
    timeout = httpx.Timeout(30.0, connect=5.0)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, trust_env=False) as http:
        session = ChatSession(
            EmulatorClient(http),
            args.from_,
            terminal.show,
            profile_name=args.name,
            phone_number_id=args.phone_number_id,
            echo=not interactive,  # a terminal already shows what was typed
            poll_interval=args.poll_interval,
        )
        try:
            await session.open()
        except EmulatorUnreachable as exc:
            print(
                f"whatsray chat: {exc}: is the emulator running? Start the platform with "
                "`bash scripts/run-local` (or `whatsray emulator`), or pass --emulator-url.",
                file=sys.stderr,
            )
            return 2
        except EmulatorRequestError as exc:
            print(f"whatsray chat: {url} is not a whatsray emulator ({exc})", file=sys.stderr)
            return 2
        name = f" ({args.name})" if args.name else ""
        terminal.show(
            [f"whatsray chat: you are +{args.from_}{name} on {url}; /help, /quit or Ctrl-D"]
        )
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        _start_reader(asyncio.get_running_loop(), queue, terminal, interactive)
        await converse(session, queue, linger)
    return 0


def run_chat_command(args: argparse.Namespace) -> int:
    url = resolve_emulator_url(args.emulator_url, os.environ)
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    linger = args.linger
    if linger is None:  # typed: Ctrl-D means leave now; piped: the replies are the point
        linger = 0.0 if sys.stdin.isatty() else PIPED_LINGER_S
    saved_tty = _save_tty() if interactive else None
    try:
        return asyncio.run(_chat(args, url, interactive, linger))
    except KeyboardInterrupt:  # Ctrl-C: leave quietly
        if interactive:
            print()
        return 0
    finally:
        _restore_tty(saved_tty)


def _save_tty() -> Sequence[Any] | None:
    try:
        import termios  # POSIX only

        return termios.tcgetattr(sys.stdin.fileno())
    except (ImportError, OSError, ValueError):
        return None


def _restore_tty(saved: Sequence[Any] | None) -> None:
    """readline switches the terminal out of line mode while it reads; a Ctrl-C in the middle
    of a read would leave it that way for the shell."""
    if saved is None:
        return
    import termios

    with contextlib.suppress(OSError, ValueError):
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, list(saved))
