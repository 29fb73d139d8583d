"""`whatsray chat`: how bot messages are printed, `EmulatorClient` against the real emulator app
in-process, and the chat session (send, poll, tap, linger) with a small echo bot behind it."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from emulator_harness import (
    OTHER_USER,
    PNID,
    TOKEN,
    USER,
    USER_DIGITS,
    Harness,
    Receiver,
    emulator_harness,
)
from starlette.requests import Request
from starlette.responses import Response

from whatsray.cli import build_parser
from whatsray.cli.chat import ChatSession, Terminal, converse, resolve_emulator_url
from whatsray.cli.chat_render import Option, render_reply, reply_options
from whatsray.whatsapp.emulator.client import (
    EmulatorClient,
    EmulatorRequestError,
    EmulatorUnreachable,
    OutboundMessage,
)
from whatsray.whatsapp.graph_client import GraphClient
from whatsray.whatsapp.message_content import InteractiveContent, InteractiveType
from whatsray.whatsapp.messages import (
    ListMessage,
    ListRow,
    ListSection,
    MediaMessage,
    Message,
    ReactionMessage,
    ReplyButton,
    ReplyButtonsMessage,
    TemplateComponent,
    TemplateMessage,
    TemplateParameter,
    TextMessage,
)

# --- rendering ---------------------------------------------------------------------------------


def sent(body: dict[str, Any], **overrides: Any) -> OutboundMessage:
    data: dict[str, Any] = {"seq": 7, "to": USER_DIGITS, "body": body, "outcome": "accepted"}
    data.update(overrides)
    return OutboundMessage.from_json(data)


BUTTONS = ReplyButtonsMessage(
    to=USER,
    header="Booking",
    body="Shall I book it?",
    footer="reply within a day",
    buttons=(ReplyButton(id="yes", title="Yes"), ReplyButton(id="no", title="No")),
)
LIST = ListMessage(
    to=USER,
    body="Pick a slot",
    button="Slots",
    sections=(
        ListSection(title="Mon", rows=(ListRow(id="mon-9", title="9:00", description="early"),)),
        ListSection(title="Tue", rows=(ListRow(id="tue-10", title="10:00"),)),
    ),
)
TEMPLATE = TemplateMessage(
    to=USER,
    name="appointment",
    language="en_US",
    components=(
        TemplateComponent(
            type="body",
            parameters=(
                TemplateParameter(type="text", text="Ana"),
                TemplateParameter(type="text", text="3pm"),
            ),
        ),
    ),
)

RENDERED: list[tuple[Message, list[str]]] = [
    (TextMessage(to=USER, body="hello"), ["bot> hello"]),
    (TextMessage(to=USER, body="two\nlines"), ["bot> two", "     lines"]),
    (
        BUTTONS,
        [
            "bot> Booking",
            "     Shall I book it?",
            "     (reply within a day)",
            "       1. Yes",
            "       2. No",
            "     (type /1 to /2 to choose)",
        ],
    ),
    (
        LIST,
        [
            "bot> Pick a slot",
            "     [Slots]",
            "       Mon",
            "       1. 9:00 - early",
            "       Tue",
            "       2. 10:00",
            "     (type /1 to /2 to choose)",
        ],
    ),
    (
        MediaMessage(to=USER, media_type="image", media_id="123", caption="This week"),
        ["bot> [image] This week"],
    ),
    (MediaMessage(to=USER, media_type="image", link="https://x.test/a.png"), ["bot> [image]"]),
    (
        MediaMessage(to=USER, media_type="document", media_id="9", filename="report.pdf"),
        ["bot> [document] report.pdf"],
    ),
    (ReactionMessage(to=USER, message_id="wamid.X", emoji="👍"), ["bot> [reacted 👍]"]),
    (ReactionMessage(to=USER, message_id="wamid.X", emoji=""), ["bot> [reaction removed]"]),
    (TEMPLATE, ["bot> [template appointment] Ana, 3pm"]),
]


@pytest.mark.parametrize(("message", "expected"), RENDERED, ids=lambda v: type(v).__name__)
def test_render_reply(message: Message, expected: list[str]) -> None:
    assert render_reply(sent(message.to_graph_body())) == expected


def test_render_types_the_send_models_do_not_cover() -> None:
    location = {"type": "location", "location": {"latitude": 48.85, "longitude": 2.35, "name": "P"}}
    assert render_reply(sent(location)) == ["bot> [location] P (48.85, 2.35)"]
    cta = {"type": "interactive", "interactive": {"type": "cta_url", "body": {"text": "Open"}}}
    assert render_reply(sent(cta)) == ["bot> Open", "     [interactive cta_url]"]
    assert render_reply(sent({"type": "order", "order": {}})) == ["bot> [order]"]
    assert render_reply(sent({})) == ["bot> [unknown]"]


def test_a_rejected_send_is_flagged() -> None:
    rejected = sent(
        TextMessage(to=USER, body="too late").to_graph_body(),
        outcome="rejected",
        error_code=131047,
        error_details="Re-engagement message",
    )
    assert render_reply(rejected) == ["bot! [rejected 131047: Re-engagement message] too late"]


def test_reply_options_number_buttons_and_rows_in_order() -> None:
    assert reply_options(sent(BUTTONS.to_graph_body())) == [
        Option("button_reply", "yes", "Yes"),
        Option("button_reply", "no", "No"),
    ]
    rows = reply_options(sent(LIST.to_graph_body()))
    assert rows == [
        Option("list_reply", "mon-9", "9:00", "early"),
        Option("list_reply", "tue-10", "10:00"),
    ]
    assert rows[0].inbound_message() == {
        "type": "list_reply",
        "id": "mon-9",
        "title": "9:00",
        "description": "early",
    }
    assert reply_options(sent(TextMessage(to=USER, body="hi").to_graph_body())) == []


def test_terminal_redraws_the_half_typed_line_under_a_reply() -> None:
    out = io.StringIO()
    terminal = Terminal(out, line_buffer=lambda: "hal")
    terminal.show(["bot> hi"])
    assert out.getvalue() == "bot> hi\n"  # not at the prompt: nothing to redraw
    terminal.prompt_shown()  # readline's pre-input hook
    terminal.show(["bot> there"])
    assert out.getvalue() == "bot> hi\n\r\x1b[Kbot> there\nyou> hal"


# --- command line ------------------------------------------------------------------------------


def test_chat_arguments() -> None:
    args = build_parser().parse_args(["chat", "--from", "+1 555-123 4567", "--name", "Ana"])
    assert (args.from_, args.name, args.linger, args.emulator_url) == (
        USER_DIGITS,
        "Ana",
        None,
        None,
    )
    assert callable(args.func)


@pytest.mark.parametrize("bad", ["abc", "12", "+1 555 abc"])
def test_a_bad_number_is_refused(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["chat", "--from", bad])
    assert exited.value.code == 2
    assert "not a phone number" in capsys.readouterr().err


def test_emulator_url_precedence() -> None:
    env = {"WHATSRAY_EMULATOR_URL": "http://emu:9/", "WHATSRAY_EMULATOR_PORT": "9100"}
    assert resolve_emulator_url("http://flag:1/", env) == "http://flag:1"
    assert resolve_emulator_url(None, env) == "http://emu:9"
    assert resolve_emulator_url(None, {"WHATSRAY_EMULATOR_PORT": "9100"}) == (
        "http://127.0.0.1:9100"
    )
    assert resolve_emulator_url(None, {}) == "http://127.0.0.1:8025"


# --- against the emulator, with an echo bot ----------------------------------------------------


@dataclass
class EchoBot(Receiver):
    """A bot behind the webhook: "menu" gets two reply buttons, anything else "echo: <text>"."""

    graph: GraphClient | None = None
    sent_wamids: list[str] = field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        response = await super().endpoint(request)
        if response.status_code == 200 and self.graph is not None:
            for event in self.messages()[len(self.sent_wamids) :]:
                if event.text == "menu":
                    result = await self.graph.send(BUTTONS.model_copy(update={"to": USER}))
                else:
                    result = await self.graph.send_text(USER, f"echo: {event.text}")
                self.sent_wamids.append(result.wamid)
        return response


@pytest.fixture
async def bot() -> AsyncIterator[tuple[Harness, EchoBot]]:
    echo = EchoBot()
    async with emulator_harness(echo) as h:
        echo.graph = GraphClient(h.client, TOKEN, PNID, base_url="http://emulator")
        yield h, echo


class FakeTime:
    """A clock and a sleep that advances it, with bot actions scheduled at given times."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps = 0
        self.scheduled: list[tuple[float, Callable[[], Any]]] = []

    def clock(self) -> float:
        return self.now

    def at(self, delay: float, action: Callable[[], Any]) -> None:
        self.scheduled.append((self.now + delay, action))

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
        due = [item for item in self.scheduled if item[0] <= self.now]
        self.scheduled = [item for item in self.scheduled if item[0] > self.now]
        for _, action in due:
            await action()
        await asyncio.sleep(0)


async def test_send_text_returns_the_wamid_the_bot_receives(
    bot: tuple[Harness, EchoBot],
) -> None:
    h, echo = bot
    wamid = await EmulatorClient(h.client).send_text(USER_DIGITS, "hi", "Ana")
    [event] = echo.messages()
    assert (event.message_id, event.text, event.profile_name) == (wamid, "hi", "Ana")
    assert event.from_phone == USER_DIGITS


async def test_replies_are_this_users_and_after_since() -> None:
    async with emulator_harness(window_enforcement=False) as h:
        client = EmulatorClient(h.client)
        assert await client.last_seq(USER) == 0
        await h.send(USER, text={"body": "one"})
        await h.send(OTHER_USER, text={"body": "not yours"})
        await h.send(USER, text={"body": "two"})
        replies = await client.replies(USER)
        assert [r.body["text"]["body"] for r in replies] == ["one", "two"]
        assert all(r.accepted and r.to == USER for r in replies)
        later = await client.replies(USER_DIGITS, since=replies[0].seq)
        assert [r.body["text"]["body"] for r in later] == ["two"]
        assert await client.last_seq(USER) == replies[1].seq


async def test_a_send_outside_the_window_is_listed_as_rejected() -> None:
    async with emulator_harness() as h:
        await h.send(USER, text={"body": "nobody asked"})
        [reply] = await EmulatorClient(h.client).replies(USER)
        assert (reply.accepted, reply.error_code) == (False, 131047)
        assert render_reply(reply)[0].startswith("bot! [rejected 131047: ")


async def test_wait_for_replies_polls_until_the_bot_answers() -> None:
    async with emulator_harness(window_enforcement=False) as h:
        fake = FakeTime()
        client = EmulatorClient(h.client, sleep=fake.sleep, clock=fake.clock)
        fake.at(0.5, lambda: h.send(USER, text={"body": "late"}))
        found = await client.wait_for_replies(USER, 0, max_wait=10, poll_interval=0.25)
        assert [r.body["text"]["body"] for r in found] == ["late"]
        assert fake.sleeps == 2


async def test_wait_for_replies_gives_up_after_max_wait() -> None:
    async with emulator_harness() as h:
        fake = FakeTime()
        client = EmulatorClient(h.client, sleep=fake.sleep, clock=fake.clock)
        assert await client.wait_for_replies(USER, max_wait=2, poll_interval=0.5) == []
        assert fake.sleeps == 4


async def test_a_failing_webhook_gives_a_receipt_not_an_error() -> None:
    async with emulator_harness(Receiver(always=500)) as h:
        receipt = await EmulatorClient(h.client).send(USER, {"type": "text", "text": "hi"})
        assert receipt.wamid.startswith("wamid.")
        assert (receipt.delivered, receipt.status_code, receipt.retrying) == (False, 500, True)


async def test_no_webhook_url_is_a_request_error() -> None:
    async with emulator_harness(webhook_url=None) as h:
        with pytest.raises(EmulatorRequestError) as raised:
            await EmulatorClient(h.client).send_text(USER, "hi")
        assert raised.value.status_code == 409
        assert "webhook" in raised.value.message


def refusing_client(url: str = "http://127.0.0.1:8025") -> httpx.AsyncClient:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    return httpx.AsyncClient(transport=httpx.MockTransport(refuse), base_url=url)


async def test_nothing_listening_is_unreachable() -> None:
    async with refusing_client() as http:
        session = ChatSession(EmulatorClient(http), USER_DIGITS, print)
        with pytest.raises(EmulatorUnreachable) as raised:
            await session.open()
        assert "http://127.0.0.1:8025" in str(raised.value)


async def test_something_else_at_the_url_is_not_an_emulator() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(404, text="Not Found"))
    async with httpx.AsyncClient(transport=transport, base_url="http://web") as http:
        with pytest.raises(EmulatorRequestError) as raised:
            await EmulatorClient(http).health()
        assert raised.value.status_code == 404


# --- the chat session --------------------------------------------------------------------------


def session_for(h: Harness, shown: list[str], fake: FakeTime, **kwargs: Any) -> ChatSession:
    client = EmulatorClient(h.client, sleep=fake.sleep, clock=fake.clock)
    return ChatSession(
        client, USER_DIGITS, shown.extend, sleep=fake.sleep, clock=fake.clock, **kwargs
    )


async def test_lines_are_sent_and_echoes_shown(bot: tuple[Harness, EchoBot]) -> None:
    h, echo = bot
    shown: list[str] = []
    session = session_for(h, shown, FakeTime(), profile_name="Ana", echo=True)
    await session.open()
    assert await session.handle("hello\n")
    assert await session.handle("   ")
    assert shown == ["you> hello", "bot> echo: hello"]
    assert [e.text for e in echo.messages()] == ["hello"]
    assert await session.handle("/quit") is False
    assert len(echo.messages()) == 1


async def test_opening_skips_what_the_bot_sent_before(bot: tuple[Harness, EchoBot]) -> None:
    h, _ = bot
    await EmulatorClient(h.client).send_text(USER, "earlier")
    shown: list[str] = []
    session = session_for(h, shown, FakeTime())
    await session.open()
    assert await session.poll() == 0
    await session.handle("now")
    assert shown == ["bot> echo: now"]


async def test_tapping_a_button_sends_a_button_reply(bot: tuple[Harness, EchoBot]) -> None:
    h, echo = bot
    shown: list[str] = []
    session = session_for(h, shown, FakeTime())
    await session.open()
    await session.handle("menu")
    assert "       2. No" in shown
    shown.clear()
    await session.handle("/2")
    tap = echo.messages()[-1]
    assert isinstance(tap.content, InteractiveContent)
    content = tap.content
    assert content.interactive_type is InteractiveType.BUTTON_REPLY
    assert (content.reply_id, content.title) == ("no", "No")
    assert tap.context is not None and tap.context.quoted_message_id == echo.sent_wamids[0]
    assert shown == ["you> [tapped No]", "bot> echo: No"]
    shown.clear()
    await session.handle("/5")
    assert shown == ["-- no option 5 (options of the last menu: /1 to /2)"]


async def test_converse_until_end_of_input(bot: tuple[Harness, EchoBot]) -> None:
    h, echo = bot
    shown: list[str] = []
    session = session_for(h, shown, FakeTime())
    await session.open()
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    for line in ("one", "two", None, "never read"):
        lines.put_nowait(line)
    await converse(session, lines, linger=0)
    assert [e.text for e in echo.messages()] == ["one", "two"]
    assert shown == ["bot> echo: one", "bot> echo: two"]
    assert lines.qsize() == 1


async def test_quit_stops_reading(bot: tuple[Harness, EchoBot]) -> None:
    h, echo = bot
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    for line in ("/quit", "never sent", None):
        lines.put_nowait(line)
    session = session_for(h, [], FakeTime())
    await session.open()
    await converse(session, lines, linger=5)
    assert echo.messages() == []


async def test_linger_waits_for_a_quiet_period() -> None:
    async with emulator_harness(window_enforcement=False) as h:
        fake = FakeTime()
        shown: list[str] = []
        session = session_for(h, shown, fake, poll_interval=0.5)
        await session.open()

        def bot_says(text: str) -> Callable[[], Any]:
            return lambda: h.send(USER, text={"body": text})

        fake.at(2.0, bot_says("at 2 s"))
        fake.at(4.5, bot_says("at 4.5 s: 2.5 s after the last, within 3"))
        fake.at(8.0, bot_says("at 8 s: 3.5 s after the last, too late"))
        start = fake.now
        await session.linger(3.0)
        assert shown == ["bot> at 2 s", "bot> at 4.5 s: 2.5 s after the last, within 3"]
        assert fake.now - start == 7.5


async def test_an_unreachable_emulator_is_reported_once() -> None:
    state = {"up": False}

    def handler(request: httpx.Request) -> httpx.Response:
        if not state["up"]:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=[])

    shown: list[str] = []
    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(transport=transport, base_url="http://emu") as http:
        session = ChatSession(EmulatorClient(http), USER_DIGITS, shown.extend)
        await session.poll()
        await session.poll()
        assert shown == ["-- nothing answers at http://emu (refused) (still trying)"]
        state["up"] = True
        await session.poll()
        assert shown[1:] == ["-- the emulator answers again"]
        await session.handle("hi")
        assert shown[2:] == [
            "-- not sent: emulator answered HTTP 200: /emulator/inbound answered without a wamid"
        ]


async def test_a_restarted_emulator_is_read_from_the_start() -> None:
    """A fresh emulator numbers its log from 1 again; replies there must not be skipped."""
    emulator: dict[str, Any] = {"up": True, "outbound": [{"seq": 40, "body": {}}]}

    def handler(request: httpx.Request) -> httpx.Response:
        if not emulator["up"]:
            raise httpx.ConnectError("refused", request=request)
        if request.url.path == "/emulator/health":
            return httpx.Response(200, json={"ok": True})
        since = int(request.url.params.get("since", "0"))
        return httpx.Response(200, json=[m for m in emulator["outbound"] if m["seq"] > since])

    shown: list[str] = []
    transport = httpx.MockTransport(handler)
    async with httpx.AsyncClient(transport=transport, base_url="http://emu") as http:
        session = ChatSession(EmulatorClient(http), USER_DIGITS, shown.extend)
        await session.open()
        assert session.since == 40
        emulator["up"] = False
        await session.poll()
        hello = TextMessage(to=USER, body="hello again").to_graph_body()
        emulator.update(up=True, outbound=[{"seq": 3, "body": hello}])
        await session.poll()
        assert shown[1:] == ["-- the emulator answers again", "bot> hello again"]
        await session.poll()  # the same emulator: nothing is shown twice
        assert len(shown) == 3
