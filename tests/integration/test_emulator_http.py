"""The emulator over real loopback HTTP: uvicorn in a thread, then `whatsray emulator` as a
subprocess, each delivering signed webhooks to a real uvicorn receiver that verifies them; and
its lean webhook client against raw servers."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from whatsray.whatsapp.emulator import EmulatorConfig, StatusDelays, create_emulator_app
from whatsray.whatsapp.emulator.webhook_http import ConnectError, ReadTimeout, WebhookPoster
from whatsray.whatsapp.events import Event, MessageEvent, StatusEvent
from whatsray.whatsapp.parsing import parse_webhook
from whatsray.whatsapp.signature import SIGNATURE_HEADER, verify_signature

pytestmark = pytest.mark.integration

SECRET = "loopback-secret"
TOKEN = "loopback-token"
USER = "15551234567"
PNID = "106540352242922"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Receiver:
    """Verifies every signature (403 otherwise) and keeps the parsed events."""

    events: list[Event] = field(default_factory=list)
    refused: int = 0

    async def webhook(self, request: Request) -> Response:
        raw = await request.body()
        if not verify_signature(SECRET, raw, request.headers.get(SIGNATURE_HEADER)):
            self.refused += 1
            return Response(status_code=403)
        self.events.extend(parse_webhook(raw))
        return Response("ok")

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/webhook", self.webhook, methods=["POST"])])

    def statuses(self) -> list[str]:
        return [e.status.value for e in self.events if isinstance(e, StatusEvent)]

    def texts(self) -> list[str | None]:
        return [e.text for e in self.events if isinstance(e, MessageEvent)]


def wait_until(condition: Callable[[], bool], what: str, limit: float = 15.0) -> None:
    """Poll for a condition; the limit only bounds a broken run, it is not a timing check."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    from tests.support.servers import serve_on_loopback

    hook = Receiver()
    with serve_on_loopback(hook.app()) as url:
        yield hook, f"{url}/webhook"


def send_text(client: httpx.Client, text: str) -> httpx.Response:
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "to": f"+{USER}",
        "type": "text",
        "text": {"body": text},
    }
    return client.post(f"/v25.0/{PNID}/messages", json=body, headers=AUTH)


def test_emulator_on_loopback(receiver: tuple[Receiver, str]) -> None:
    from tests.support.servers import serve_on_loopback

    hook, webhook_url = receiver
    config = EmulatorConfig(
        app_secret=SECRET,
        access_token=TOKEN,
        webhook_url=webhook_url,
        status_delays=StatusDelays(sent=0.0, delivered=0.05, read=0.1),
    )
    with (
        serve_on_loopback(create_emulator_app(config)) as base,
        httpx.Client(base_url=base, timeout=10) as client,
    ):
        inbound = client.post(
            "/emulator/inbound",
            json={
                "from": USER,
                "profile_name": "Zoë",
                "message": {"type": "text", "text": "olá/?"},
            },
        )
        assert inbound.status_code == 200, inbound.text
        assert inbound.json()["delivery"]["delivered"] is True
        assert hook.texts() == ["olá/?"]

        sent = send_text(client, "hi there")
        assert sent.status_code == 200, sent.text
        assert client.get("/emulator/webhooks/pending").json()["pending"] > 0
        # Quiet = nothing pending; then everything has been delivered.
        wait_until(
            lambda: client.get("/emulator/webhooks/pending").json()["pending"] == 0,
            "no pending webhook",
        )
        assert sorted(hook.statuses()) == ["delivered", "read", "sent"]
        assert hook.refused == 0

        # A day later over HTTP: the window has closed.
        client.post("/emulator/clock/advance", json={"seconds": 24 * 3600 + 1})
        closed = send_text(client, "too late")
        assert closed.status_code == 400
        assert closed.json()["error"]["code"] == 131047

        # Media links point back at the loopback server.
        media_id = client.post(
            f"/v25.0/{PNID}/media",
            data={"messaging_product": "whatsapp", "type": "text/plain"},
            files={"file": ("a.txt", b"hello file", "text/plain")},
            headers=AUTH,
        ).json()["id"]
        url = client.get(f"/v25.0/{media_id}", headers=AUTH).json()["url"]
        assert url.startswith(base)
        assert httpx.get(url, headers=AUTH).content == b"hello file"

        outbound = client.get("/emulator/outbound").json()
        assert [r["outcome"] for r in outbound] == ["accepted", "rejected"]


def test_whatsray_emulator_command(receiver: tuple[Receiver, str]) -> None:
    from tests.support.servers import free_port, wait_for_http

    hook, webhook_url = receiver
    port = free_port()
    command = [
        sys.executable,
        "-c",
        "import sys; from whatsray.cli import main; sys.exit(main(sys.argv[1:]))",
        "emulator",
        "--port", str(port),
        "--webhook-url", webhook_url,
        "--app-secret", SECRET,
        "--access-token", TOKEN,
        "--sent-delay", "0",
        "--delivered-delay", "0.05",
        "--read-delay", "-1",
        "--status-batch-window-ms", "10",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(f"{base}/emulator/health")
        with httpx.Client(base_url=base, timeout=10) as client:
            inbound = client.post(
                "/emulator/inbound", json={"from": USER, "message": {"type": "text", "text": "yo"}}
            )
            assert inbound.status_code == 200, inbound.text
            assert send_text(client, "hello").status_code == 200
            wait_until(lambda: len(hook.statuses()) == 2, "sent and delivered statuses")
            assert hook.texts() == ["yo"]
            unauthorised = client.post(f"/v25.0/{PNID}/messages", json={})
            assert unauthorised.status_code == 401
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=15)
    assert f"http://127.0.0.1:{port}/v25.0" in output
    assert TOKEN in output and SECRET in output
    assert "send     " in output  # one console line per send
    assert "webhook inbound" in output  # and per delivery
    assert "webhook status" in output


# --- the lean webhook client, against raw servers that misbehave on purpose -------------------


@dataclass
class RawServer:
    """An HTTP/1.1 server on asyncio streams that answers each request with `answer` (bytes),
    closing the connection after it when `close_after` is set."""

    answer: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    close_after: bool = False
    silent: bool = False
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append(head + await reader.readexactly(length))
                if self.silent:
                    await asyncio.sleep(3600)
                writer.write(self.answer)
                await writer.drain()
                if self.close_after:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def raw_server(server: RawServer) -> AsyncIterator[str]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/webhook?x=1"
    finally:
        listener.close()


HEADERS = {"Content-Type": "application/json", SIGNATURE_HEADER: "sha256=00"}


async def test_poster_reuses_one_connection_and_sends_the_exact_request() -> None:
    server = RawServer()
    poster = WebhookPoster()
    async with raw_server(server) as url:
        for body in (b'{"a":1}', b'{"b":2}', b'{"c":3}'):
            assert await poster.post(url, body, HEADERS, time_limit=10) == 200
        await poster.aclose()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /webhook?x=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nX-Hub-Signature-256: sha256=00\r\n" in first
    assert first.endswith(b'Content-Length: 7\r\n\r\n{"a":1}')


async def test_poster_sends_again_when_the_server_closed_an_idle_connection() -> None:
    # No "Connection: close" header, yet the server hangs up after each answer.
    server = RawServer(close_after=True)
    poster = WebhookPoster()
    async with raw_server(server) as url:
        statuses = [await poster.post(url, b"{}", HEADERS, time_limit=10) for _ in range(3)]
        await poster.aclose()
    assert statuses == [200, 200, 200]
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    ("answer", "close_after"),
    [
        (
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\nbusy\r\n0\r\n\r\n",
            False,
        ),
        (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\nbusy", True),
        (b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy", True),
    ],
)
async def test_poster_reads_every_kind_of_answer(answer: bytes, close_after: bool) -> None:
    server = RawServer(answer=answer, close_after=close_after)
    poster = WebhookPoster()
    async with raw_server(server) as url:
        assert await poster.post(url, b"{}", HEADERS, time_limit=10) == 503
        assert await poster.post(url, b"{}", HEADERS, time_limit=10) == 503
        await poster.aclose()
    assert server.connections == (2 if close_after else 1)


async def test_poster_errors_are_named_like_httpx() -> None:
    from tests.support.servers import free_port

    poster = WebhookPoster()
    with pytest.raises(ConnectError):
        await poster.post(f"http://127.0.0.1:{free_port()}/", b"{}", HEADERS, time_limit=10)
    server = RawServer(silent=True)
    async with raw_server(server) as url:
        with pytest.raises(ReadTimeout):
            await poster.post(url, b"{}", HEADERS, time_limit=0.2)
    await poster.aclose()
