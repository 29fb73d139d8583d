"""`whatsray chat` end to end: `whatsray emulator` as a subprocess, a small echo bot on loopback
(it answers each inbound text through the Graph API with `GraphClient`), and `whatsray chat` as a
subprocess with lines piped in."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support.servers import free_port, serve_on_loopback, wait_for_http
from whatsray.whatsapp.events import MessageEvent
from whatsray.whatsapp.graph_client import GraphClient
from whatsray.whatsapp.parsing import parse_webhook
from whatsray.whatsapp.signature import SIGNATURE_HEADER, verify_signature

pytestmark = pytest.mark.integration

SECRET = "chat-secret"
TOKEN = "chat-token"
PNID = "106540352242922"
USER = "15551234567"
CLI = [sys.executable, "-m", "whatsray.cli"]


def echo_bot(emulator_url: str) -> Starlette:
    """A webhook endpoint that answers every inbound text with "echo: <text>". It sends before
    answering the webhook: the inbound message already opened the user's 24 h window."""

    async def webhook(request: Request) -> Response:
        raw = await request.body()
        if not verify_signature(SECRET, raw, request.headers.get(SIGNATURE_HEADER)):
            return Response(status_code=403)
        texts = [
            (event.from_phone, event.text)
            for event in parse_webhook(raw)
            if isinstance(event, MessageEvent) and event.text
        ]
        if texts:
            async with httpx.AsyncClient(timeout=10) as http:
                graph = GraphClient(http, TOKEN, PNID, base_url=emulator_url)
                for phone, text in texts:
                    await graph.send_text(f"+{phone}", f"echo: {text}")
        return Response("ok")

    return Starlette(routes=[Route("/webhook", webhook, methods=["POST"])])


@pytest.fixture
def emulator_with_echo_bot() -> Iterator[str]:
    port = free_port()
    emulator_url = f"http://127.0.0.1:{port}"
    with serve_on_loopback(echo_bot(emulator_url)) as bot_url:
        command = [
            *CLI, "emulator",
            "--port", str(port),
            "--webhook-url", f"{bot_url}/webhook",
            "--app-secret", SECRET,
            "--access-token", TOKEN,
        ]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_http(f"{emulator_url}/emulator/health")
            yield emulator_url
        finally:
            process.terminate()
            process.wait(timeout=15)


def test_piped_lines_are_sent_and_the_echoes_printed_in_order(
    emulator_with_echo_bot: str,
) -> None:
    chat = subprocess.run(
        [*CLI, "chat", "--from", USER, "--name", "Ana",
         "--emulator-url", emulator_with_echo_bot, "--linger", "3"],
        input="hello there\n\nsecond message\n",
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert chat.returncode == 0, chat.stderr
    lines = chat.stdout.splitlines()
    assert lines[0].startswith("whatsray chat: you are +15551234567 (Ana)")
    bot = [line for line in lines if line.startswith("bot> ")]
    assert bot == ["bot> echo: hello there", "bot> echo: second message"]
    # Piped input is echoed, so stdout reads as a transcript.
    assert lines.index("you> hello there") < lines.index("bot> echo: hello there")

    # Both messages reached the bot as this user, with the profile name.
    with httpx.Client(base_url=emulator_with_echo_bot) as client:
        attempts = client.get("/emulator/webhooks", params={"kind": "inbound"}).json()
    contacts = [a["payload"]["entry"][0]["changes"][0]["value"]["contacts"][0] for a in attempts]
    assert [c["wa_id"] for c in contacts] == [USER, USER]
    assert {c["profile"]["name"] for c in contacts} == {"Ana"}


def test_a_second_chat_does_not_replay_earlier_replies(emulator_with_echo_bot: str) -> None:
    def chat(text: str) -> list[str]:
        done = subprocess.run(
            [*CLI, "chat", "--from", USER, "--emulator-url", emulator_with_echo_bot,
             "--linger", "2"],
            input=f"{text}\n",
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return [line for line in done.stdout.splitlines() if line.startswith("bot> ")]

    assert chat("one") == ["bot> echo: one"]
    assert chat("two") == ["bot> echo: two"]


def test_nothing_listening_exits_2_and_says_how_to_start_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    chat = subprocess.run(
        [*CLI, "chat", "--from", USER, "--emulator-url", url],
        input="hello\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert chat.returncode == 2
    assert chat.stdout == ""
    [message] = chat.stderr.strip().splitlines()
    assert url in message
    assert "bash scripts/run-local" in message
